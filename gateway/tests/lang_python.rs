//! Policies written in Python (componentize-py).
//!
//! - The Python port of `pci-mask` (`policies/pci-mask-py`) passes the Rust policy's own case
//!   file through the real `warden policy test`, under (just above) the smallest memory cap
//!   it needs.
//! - It answers and masks exactly like the Rust `pci-mask` on a few hundred generated cells
//!   (PANs in every format, look-alikes, NULLs, unicode) and on the same configs.
//! - A Python policy that reaches for files, sockets or the environment gets nothing; one that
//!   loops or hoards memory is stopped and denied.
//! - Hot-loaded into a running engine while Rust policies serve calls, it compiles off the
//!   serving path: no call fails, and then it takes effect.
//!
//! The components are built from source by `policies/pci-mask-py/build.sh`, which installs the
//! pinned componentize-py from PyPI into `target/toolchains/python` on first use. Only when
//! that is impossible because `python3 -m venv` does not work do these tests print why and
//! check nothing; CI installs `python3-venv`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{policy_wasm, pref, session, workspace_root};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use warden::policy::{
    Column, Command, Http, Kube, ModuleLimits, PolicyConfig, PolicyEngine, PolicyRef, Protocol,
    Row, Session, Shell, Verdict,
};
use warden::units::ByteSize;

/// Memory cap for `warden policy test` on the case file. The smallest that passes, found in
/// 64 KiB steps, is 13056 KiB (12.75 MiB): the interpreter's pre-initialised heap snapshot is
/// nearly all of it. 13 MiB leaves a few pages for changes to app.py.
const PY_CASES_MEMORY_LIMIT: &str = "13MiB";

/// Memory cap for the engine tests, which also send a 512-row / 1 MiB batch (four times the
/// gateway's default batch) to an instance that has already served others. With cells that
/// hold characters beyond U+FFFF (CPython then stores 4 bytes per character) and invisibles
/// (the general scanner), that needs more than the 16 MiB default: the cap the module's
/// README recommends for production (`[policy.modules.NAME] memory_limit`).
const PY_MEMORY_LIMIT: &str = "24MiB";

/// The Python components, built once per test process (one componentize-py at a time).
struct Built {
    /// `policies/pci-mask-py/app.py`.
    pci_mask: PathBuf,
    /// `policies/pci-mask-py/tests/sandbox_probe.py`.
    probe: PathBuf,
    /// An environment variable's value present while the probe was built: it must not be
    /// baked into the component (componentize-py runs the module at build time).
    canary: String,
}

/// The built components, or `None` (after printing why) when Python cannot be set up here.
fn python() -> Option<&'static Built> {
    static BUILT: OnceLock<Option<Built>> = OnceLock::new();
    BUILT.get_or_init(build).as_ref()
}

fn build() -> Option<Built> {
    let root = workspace_root();
    let toolchain = std::env::var_os("WARDEN_PY_TOOLCHAIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/toolchains/python"));
    if !toolchain.join("bin/componentize-py").exists()
        && let Err(why) = venv_works()
    {
        // Straight to stderr, past the test harness's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED lang_python: `python3 -m venv` does not work here, so componentize-py \
             cannot be installed ({why}). On Debian: apt-get install python3 python3-venv"
        );
        return None;
    }
    let out = root.join("target/test-policies/python");
    let script = root.join("policies/pci-mask-py/build.sh");
    // Built from this source by `tests/run.sh` just before (`policies/build.sh`), or here.
    let prebuilt = std::env::var_os("WARDEN_BUILT_POLICIES")
        .map(|d| PathBuf::from(d).join("pci-mask-py.wasm"))
        .filter(|p| p.exists());
    let pci_mask = match prebuilt {
        Some(p) => p,
        None => {
            let p = out.join("pci-mask-py.wasm");
            run_build(&script, &[p.as_os_str()], None);
            p
        }
    };
    let probe = out.join("sandbox-probe.wasm");
    let canary = format!("canary-{}", std::process::id());
    let app = root.join("policies/pci-mask-py/tests/sandbox_probe.py");
    run_build(
        &script,
        &["--app".as_ref(), app.as_os_str(), probe.as_os_str()],
        Some(("WARDEN_PROBE_CANARY", &canary)),
    );
    Some(Built {
        pci_mask,
        probe,
        canary,
    })
}

/// Whether `python3 -m venv` can create a virtual environment (with pip).
fn venv_works() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let output = Process::new("python3")
        .args(["-m", "venv"])
        .arg(dir.path().join("venv"))
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

fn run_build(script: &Path, args: &[&std::ffi::OsStr], env: Option<(&str, &str)>) {
    let mut cmd = Process::new("bash");
    cmd.arg(script).args(args);
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let output = cmd.output().expect("run policies/pci-mask-py/build.sh");
    assert!(
        output.status.success(),
        "build.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "{}(build.sh took {:.1?})",
        String::from_utf8_lossy(&output.stdout),
        started.elapsed()
    );
}

/// `[policy.modules.NAME]` limits for a Python module: [`PY_MEMORY_LIMIT`] and `deadline`.
/// Where a test is about answers, not speed, the deadline is long enough that a call preempted
/// on a loaded 2-core machine cannot miss it; latencies are printed instead.
fn python_limits(name: &str, deadline: Duration) -> (String, ModuleLimits) {
    (
        name.to_string(),
        ModuleLimits {
            deadline: Some(deadline),
            init_deadline: None,
            memory_limit: Some(ByteSize::parse(PY_MEMORY_LIMIT).unwrap()),
        },
    )
}

// ------------------------------------------------------------------------------------------
// (b) the Rust policy's case file, through the real binary
// ------------------------------------------------------------------------------------------

#[test]
fn python_pci_mask_passes_the_rust_case_file() {
    let Some(built) = python() else { return };
    let root = workspace_root();
    let started = Instant::now();
    let output = Process::new(env!("CARGO_BIN_EXE_warden"))
        .args(["policy", "test", "--cache"])
        .arg(common::compile_cache())
        .arg(&built.pci_mask)
        .arg(root.join("policies/pci-mask/cases.toml"))
        .args([
            "--memory-limit",
            PY_CASES_MEMORY_LIMIT,
            // Every case passes at the production 10 ms on an idle machine; the margin is for
            // a call preempted while `cargo test` runs everything on 2 cores.
            "--deadline",
            "100ms",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}(policy test took {:.1?})", started.elapsed());
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

// ------------------------------------------------------------------------------------------
// (c) same verdicts and same edits as the Rust pci-mask
// ------------------------------------------------------------------------------------------

/// Configs both policies get: accepted ones, and ones both must refuse.
const CONFIGS: &[&str] = &[
    "",
    "  \n",
    "{}",
    r#"{"rule": "card"}"#,
    r#"{"rule": "card", "exempt_columns": ["Token", "CAFé", "ref"]}"#,
    r#"{"exempt_columns": []}"#,
    r#"  {"rule": "pan"}  "#,
    // refused
    r#"{"rules": "pan"}"#,
    r#"{"rule": ""}"#,
    "pan",
    r#"{"exempt_columns": "x"}"#,
    r#"{"exempt_columns": ["a", 1]}"#,
    r#"{"exempt_columns": null}"#,
    r#"{"rule": null}"#,
    r#"{"rule": 7}"#,
    r#"{"rule": "a", "rule": "b"}"#,
    r#"{"rule": "\ud800"}"#,
    r#"{"rule": "pan"} trailing"#,
    "null",
    "NaN",
    "\u{1c}",
    "{",
];

/// Configs in serde's positional form for structs (`["card", ["token"]]` means
/// `{"rule": "card", "exempt_columns": ["token"]}`), which the Rust policy accepts by accident
/// of `#[derive(Deserialize)]`. The documented config is an object; the Python policy refuses
/// anything else.
const ARRAY_CONFIGS: &[&str] = &["[]", r#"["card"]"#, r#"["card", ["token"]]"#];

/// Engine with the Rust and the Python pci-mask side by side, initialised with every config of
/// [`CONFIGS`] and [`ARRAY_CONFIGS`] (refused ones are logged, and deny when called).
async fn both(dir: &Path, built: &Built) -> PolicyEngine {
    std::fs::copy(policy_wasm("pci-mask"), dir.join("pci-mask.wasm")).unwrap();
    std::fs::copy(&built.pci_mask, dir.join("pci-mask-py.wasm")).unwrap();
    let chains: Vec<PolicyRef> = ["pci-mask", "pci-mask-py"]
        .iter()
        .flat_map(|m| CONFIGS.iter().chain(ARRAY_CONFIGS).map(move |c| pref(m, c)))
        .collect();
    let config = PolicyConfig {
        dir: dir.to_path_buf(),
        // The tests' shared cache (componentize-py output is not byte-reproducible,
        // componentize-py#247, so it holds this run's build; `tests/run.sh` empties it).
        cache_dir: Some(common::compile_cache()),
        reload_interval: Duration::ZERO,
        deadline: Duration::from_secs(5),
        // The Python module's limits come from its own entry: per-module limits at work.
        modules: BTreeMap::from([python_limits("pci-mask-py", Duration::from_secs(5))]),
        ..PolicyConfig::default()
    };
    let started = Instant::now();
    let engine = PolicyEngine::start(&config, &chains).await.unwrap();
    eprintln!(
        "loaded both modules with {} configs each in {:.1?}",
        chains.len() / 2,
        started.elapsed()
    );
    engine
}

/// A verdict with its failure cause, comparable across the two modules (the texts of init
/// errors differ: serde's and Python's wording).
fn outcome(d: &warden::policy::Decision) -> (String, Option<&'static str>) {
    let p = &d.policies[0];
    let verdict = match (&p.verdict, &p.failure) {
        (Verdict::Deny(_), Some(_)) => "deny(failure)".to_string(),
        (v, _) => format!("{v:?}"),
    };
    (verdict, p.failure.as_ref().map(|f| f.cause()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_rust_pci_mask_agree() {
    let Some(built) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let engine = both(dir.path(), built).await;
    let select = sql("SELECT pan FROM cards");

    // Config: the same ones accepted, the same ones refused. Deep nesting is an `init` error
    // too, not a trap (CPython's recursive JSON decoder would overflow the Wasm stack).
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let (deep, deeper) = (nested(100), nested(5000));
    for config in CONFIGS
        .iter()
        .copied()
        .chain([deep.as_str(), deeper.as_str()])
    {
        let rust = engine
            .check(&[pref("pci-mask", config)], &session(), &select)
            .await;
        let py = engine
            .check(&[pref("pci-mask-py", config)], &session(), &select)
            .await;
        assert_eq!(outcome(&rust), outcome(&py), "config {config:?}");
        if let Some(f) = &py.policies[0].failure {
            assert_eq!(f.cause(), "init", "config {config:?}: {f}");
        }
    }

    for config in ARRAY_CONFIGS {
        let py = engine
            .check(&[pref("pci-mask-py", config)], &session(), &select)
            .await;
        let failure = py.policies[0].failure.as_ref().map(|f| f.cause());
        assert_eq!(failure, Some("init"), "config {config:?}: {:?}", py.verdict);
        let rust = engine
            .check(&[pref("pci-mask", config)], &session(), &select)
            .await;
        eprintln!(
            "config {config:?}: Python refuses it, Rust answers {:?}",
            outcome(&rust)
        );
    }

    // Verdicts: every command kind, every protocol.
    for (session, command) in commands() {
        for config in ["", r#"{"rule": "card"}"#] {
            let rust = engine
                .check(&[pref("pci-mask", config)], &session, &command)
                .await;
            let py = engine
                .check(&[pref("pci-mask-py", config)], &session, &command)
                .await;
            assert!(py.policies[0].failure.is_none(), "{:?}", py.policies[0]);
            assert_eq!(rust.verdict, py.verdict, "{}", command.text());
        }
    }

    // Edits: generated cells, with and without exempt columns.
    let columns: Vec<Column> = ["id", "Token", "pan", "note", "CAFÉ", "doc", "ref", "n"]
        .iter()
        .enumerate()
        .map(|(i, name)| Column {
            name: name.to_string(),
            type_name: if i == 7 { "int8" } else { "text" }.into(),
        })
        .collect();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let rows: Vec<Row> = (0..60)
        .map(|_| {
            // Some rows are longer than the column list: those cells are masked too.
            let width = columns.len() - 1 + rng.below(3);
            (0..width).map(|_| cell(&mut rng)).collect()
        })
        .collect();
    let cells: usize = rows.iter().map(Vec::len).sum();
    let mut edited_total = 0;
    for config in [
        "",
        r#"{"rule": "card", "exempt_columns": ["Token", "CAFé", "ref"]}"#,
    ] {
        let (rust_rows, rust_summary, rust_time) =
            mask(&engine, "pci-mask", config, &columns, &rows).await;
        let (py_rows, py_summary, py_time) =
            mask(&engine, "pci-mask-py", config, &columns, &rows).await;
        for (r, (a, b)) in rust_rows.iter().zip(&py_rows).enumerate() {
            assert_eq!(a, b, "row {r} (input {:?}), config {config:?}", rows[r]);
        }
        assert_eq!(rust_summary, py_summary, "config {config:?}");
        eprintln!(
            "config {config:?}: {cells} cells, {} edited; mask-rows Rust {rust_time:.2?}, \
             Python {py_time:.2?}",
            py_summary.edited.len()
        );
        edited_total += py_summary.edited.len();
    }
    assert!(
        cells >= 400 && edited_total >= 100,
        "{cells} cells, {edited_total} edits: the generator lost its PANs"
    );

    // A full batch, as the gateway sends (512 rows or 1 MiB), dense with PANs: same answer,
    // and how long it takes.
    let big: Vec<Row> = (0..512)
        .map(|_| {
            let mut text = String::new();
            while text.len() < 2000 {
                text.push_str(&cell(&mut rng).unwrap_or_default());
                text.push(' ');
            }
            vec![Some(text)]
        })
        .collect();
    let one = &columns[3..4];
    let (rust_rows, _, rust_time) = mask(&engine, "pci-mask", "", one, &big).await;
    let (py_rows, py_summary, py_time) = mask(&engine, "pci-mask-py", "", one, &big).await;
    assert!(rust_rows == py_rows, "full batch: the masked rows differ");
    let bytes: usize = big.iter().flatten().flatten().map(String::len).sum();
    eprintln!(
        "full batch: 512 rows, {bytes} bytes, {} edited; mask-rows Rust {rust_time:.2?}, \
         Python {py_time:.2?}",
        py_summary.edited.len()
    );
    // A new instance (another config): instantiation from the snapshot, `init`, `check`.
    let started = Instant::now();
    let d = engine
        .check(
            &[pref("pci-mask-py", r#"{"rule": "new"}"#)],
            &session(),
            &select,
        )
        .await;
    assert_eq!(d.verdict, Verdict::Mask);
    eprintln!(
        "new Python instance + init + check: {:.2?}",
        started.elapsed()
    );
    // Warm instance, small batch: the latency a typical result sees.
    let small = &rows[..20];
    let mut best = Duration::MAX;
    for _ in 0..5 {
        best = best.min(mask(&engine, "pci-mask-py", "", &columns, small).await.2);
    }
    eprintln!("warm Python mask-rows, 20 rows x 8 columns: best of 5 {best:.2?}");
}

/// Run `mask-rows` of `module` on a copy of `rows`: the masked rows, the summary, the time.
async fn mask(
    engine: &PolicyEngine,
    module: &str,
    config: &str,
    columns: &[Column],
    rows: &[Row],
) -> (Vec<Row>, warden::policy::MaskSummary, Duration) {
    let chain = [pref(module, config)];
    let decision = engine.assume_mask(&chain);
    let mut rows = rows.to_vec();
    let started = Instant::now();
    let summary = engine
        .mask_rows(&decision, &session(), columns, &mut rows)
        .await
        .unwrap_or_else(|e| panic!("{module} {config:?}: {e}"));
    (rows, summary, started.elapsed())
}

fn sql(text: &str) -> Command {
    Command::Sql(warden::command::sql::parse(text).unwrap().remove(0).sql)
}

fn with_protocol(protocol: Protocol) -> Session {
    Session {
        protocol,
        ..session()
    }
}

/// Commands of every kind the host produces, each with a session of its protocol.
fn commands() -> Vec<(Session, Command)> {
    let statements = [
        "SELECT name, pan FROM cards WHERE id = 1",
        "UPDATE cards SET name = 'x' WHERE id = 1 RETURNING pan",
        "INSERT INTO log VALUES (1)",
        "DELETE FROM cards",
        "WITH d AS (DELETE FROM cards RETURNING *) SELECT * FROM d",
        "COPY cards TO STDOUT",
        "COPY cards FROM STDIN",
        "EXPLAIN SELECT 1",
        "SHOW search_path",
        "BEGIN",
        "START TRANSACTION",
        "COMMIT",
        "ROLLBACK",
        "SET search_path = payments, public",
        "PREPARE p AS SELECT 1",
        "EXECUTE p",
        "DEALLOCATE p",
        "DISCARD ALL",
        "LISTEN chan",
        "NOTIFY chan",
        "FETCH 10 FROM card_cursor",
        "CALL refresh()",
        "CREATE TABLE t (a int)",
        "DROP TABLE t",
        "TRUNCATE cards",
        "GRANT SELECT ON cards TO bob",
        "SELECT xmlelement(name card, pan) FROM cards",
        "COPY (SELECT xmlelement(name card, pan) FROM cards) TO STDOUT",
        "DO $$ BEGIN END $$",
    ];
    let mut out: Vec<(Session, Command)> = statements
        .iter()
        .flat_map(|s| warden::command::sql::parse(s).unwrap())
        .map(|s| (with_protocol(Protocol::Postgres), Command::Sql(s.sql)))
        .collect();
    for line in ["cat /var/log/payments.log", "ls -la", "echo 'unbalanced"] {
        out.push((
            with_protocol(Protocol::Ssh),
            Command::Shell(Shell {
                line: line.into(),
                argv: shell_words(line),
                interactive: line.starts_with("ls"),
                stdin_kind: warden::command::shell::stdin_kind(line),
            }),
        ));
    }
    for (method, path, kube) in [
        ("GET", "/v1/customers/42", false),
        ("POST", "/v1/charges", false),
        ("GET", "/api/v1/namespaces/pay/secrets", true),
    ] {
        out.push((
            with_protocol(Protocol::Http),
            Command::Http(Http {
                method: method.into(),
                path: path.into(),
                query: "limit=10".into(),
                headers: vec![("accept".into(), "application/json".into())],
                body: b"{\"pan\": \"4111111111111111\"}".to_vec(),
                kube: kube.then(|| Kube {
                    verb: "list".into(),
                    api_group: String::new(),
                    resource: "secrets".into(),
                    subresource: String::new(),
                    namespace: "pay".into(),
                    name: String::new(),
                }),
            }),
        ));
    }
    out
}

fn shell_words(line: &str) -> Vec<String> {
    if line.contains('\'') {
        return Vec::new(); // unbalanced quotes do not split
    }
    line.split_whitespace().map(String::from).collect()
}

// ------------------------------------------------------------------------------------------
// cell generator
// ------------------------------------------------------------------------------------------

/// xorshift64*: a fixed sequence, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// The digit that makes `body` + digit Luhn-valid.
fn check_digit(body: &str) -> char {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// A Luhn-valid PAN of `len` digits with a real-looking prefix.
fn pan(rng: &mut Rng, len: usize) -> String {
    let prefix = rng.pick(&[
        "4", "51", "55", "2223", "34", "37", "6011", "65", "3530", "36",
    ]);
    let mut body = prefix.to_string();
    body.push_str(&rng.digits(len - 1 - prefix.len()));
    let c = check_digit(&body);
    body.push(c);
    body
}

/// `digits` split into groups joined by `sep`: the usual 4-4-4-4, Amex 4-6-5, or random.
fn grouped(rng: &mut Rng, digits: &str, sep: &str) -> String {
    let sizes: Vec<usize> = match rng.below(3) {
        0 => vec![4; digits.len().div_ceil(4)],
        1 => vec![4, 6, 9],
        _ => (0..digits.len()).map(|_| rng.range(1, 7)).collect(),
    };
    let mut out = String::new();
    let mut at = 0;
    for size in sizes {
        if at >= digits.len() {
            break;
        }
        if at > 0 {
            out.push_str(sep);
        }
        let end = (at + size).min(digits.len());
        out.push_str(&digits[at..end]);
        at = end;
    }
    out
}

/// A PAN (valid or not) in any of the formats.
fn formatted(rng: &mut Rng, digits: &str) -> String {
    match rng.below(4) {
        0 => digits.to_string(),
        1 => grouped(rng, digits, " "),
        2 => grouped(rng, digits, "-"),
        _ => {
            let sep = rng.pick(&[" ", "-"]).to_string();
            grouped(rng, digits, &sep)
        }
    }
}

fn luhn_broken(pan: &str) -> String {
    let mut s = pan.to_string();
    let last = s.pop().unwrap();
    let d = (last as u8 - b'0' + 1 + (pan.len() as u8 % 8)) % 10;
    s.push(char::from(b'0' + d));
    s
}

/// Digits in another script (Arabic-Indic, full-width, Devanagari), one in four left ASCII:
/// digits to both detectors, which read every Unicode decimal digit.
fn foreign_digits(rng: &mut Rng, ascii: &str) -> String {
    let base = *[0x660u32, 0xff10, 0x966].get(rng.below(3)).unwrap();
    ascii
        .chars()
        .map(|c| match c.to_digit(10) {
            Some(d) if rng.below(4) != 0 => char::from_u32(base + d).unwrap(),
            _ => c,
        })
        .collect()
}

/// One generated cell.
fn cell(rng: &mut Rng) -> Option<String> {
    let len = rng.range(13, 19);
    let valid = pan(rng, len);
    let text = match rng.below(17) {
        0 => return None,
        1 => valid,
        2 | 3 => formatted(rng, &valid),
        4 => {
            let broken = luhn_broken(&valid);
            formatted(rng, &broken)
        }
        5 => {
            // Inside a longer digit run, or glued to one by a single separator.
            let (na, nb) = (rng.range(1, 4), rng.range(1, 3));
            let (a, b) = (rng.digits(na), rng.digits(nb));
            let joint = rng.pick(&["", "", " ", "-", "  ", "/"]);
            format!(
                "{a}{joint}{valid}{}",
                if rng.below(2) == 0 { &b } else { "" }
            )
        }
        6 => {
            // Mixed or doubled separators.
            let g = grouped(rng, &valid, " ");
            let mut out = String::new();
            for ch in g.chars() {
                if ch == ' ' {
                    out.push_str(rng.pick(&[" ", "-", "  ", "--", " "]));
                } else {
                    out.push(ch);
                }
            }
            out
        }
        7 => {
            let before = rng.pick(&["Kärtchen → ", "日本", "💳", "pan=", "(", "x", "", "№ "]);
            let after = rng.pick(&[" ✓ ok", "語", ";cvv=123", ")", "y", "", ", exp 12/29"]);
            let p = formatted(rng, &valid);
            format!("{before}{p}{after}")
        }
        8 => {
            let other_len = rng.range(13, 19);
            let other = pan(rng, other_len);
            let joint = rng.pick(&[" ", ",", " - ", "", "  ", "-", " / "]);
            let (a, b) = (formatted(rng, &valid), formatted(rng, &other));
            format!("{a}{joint}{b}")
        }
        9 => rng
            .pick(&[
                "+44 20 7946 0958",
                "+1 415 555 0100",
                "2024-01-15 12:30:00.123456",
                "1234 5678 9012",
                "123456789012",
                "amount 1234567.89 EUR",
                "00004111111111111111",
                "41111111111111110000000",
                "4111 1111 1111 1111 1",
                "ref 12 4111111111111111",
                "4111111111111111 7",
            ])
            .to_string(),
        10 => format!(
            r#"{{"pan": "{}", "id": {}, "n": 1}}"#,
            formatted(rng, &valid),
            rng.digits(20)
        ),
        11 => {
            // Digit soup: many near-misses, and by chance Luhn-valid runs of odd shapes.
            let n = rng.range(10, 60);
            (0..n)
                .map(|_| match rng.below(10) {
                    0 => ' ',
                    1 => '-',
                    2 => 'x',
                    _ => char::from(b'0' + rng.below(10) as u8),
                })
                .collect()
        }
        12 => foreign_digits(rng, &valid),
        13 => rng
            .pick(&[
                "",
                "alice",
                "é",
                "4111",
                "NULL",
                "\\N",
                "日本語テキスト",
                "12/29",
            ])
            .to_string(),
        14 => {
            let n = rng.range(12, 22);
            rng.digits(n)
        }
        16 => {
            // What a terminal does not show, and Unicode separators, after some digits.
            let marks = [
                "\u{200B}",
                "\u{AD}",
                "\u{200E}",
                "\u{301}",
                "\u{FE0F}",
                "\u{85}",
                "\u{7F}",
                "\u{0}",
                "\x1b[31m",
                "\u{E0041}",
                "\u{1680}",
                "\u{B7}",
                "\u{2E3A}",
                "\u{FF0B}",
                "\u{9B}31m",
                "\u{9B}1;2",
                "\u{2022}",
                "\u{FFFD}",
                "\u{2800}",
                "\u{2065}",
            ];
            let p = formatted(rng, &valid);
            p.chars()
                .map(|c| match rng.below(3) {
                    0 => format!("{c}{}", rng.pick(&marks).repeat(rng.range(1, 4))),
                    _ => c.to_string(),
                })
                .collect()
        }
        _ => {
            let p = formatted(rng, &valid);
            format!(
                "customer paid with {p} on 2024-05-17, order {}",
                rng.digits(8)
            )
        }
    };
    Some(text)
}

// ------------------------------------------------------------------------------------------
// (d) the sandbox, from a Python policy's point of view
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_policies_get_nothing_and_are_stopped() {
    let Some(built) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    // One file, two names: `probe` with room to report and to hit the memory cap first,
    // `probe-10ms` with the production deadline for the loops.
    std::fs::copy(&built.probe, dir.path().join("probe.wasm")).unwrap();
    std::fs::copy(&built.probe, dir.path().join("probe-10ms.wasm")).unwrap();
    let probe = |config: &str| [pref("probe", config)];
    let fast = |config: &str| [pref("probe-10ms", config)];
    let mut chains: Vec<PolicyRef> = ["", "check:sandbox", "check:alloc"]
        .iter()
        .map(|c| pref("probe", c))
        .collect();
    chains.extend(
        ["check:loop", "mask:loop", "init:loop"]
            .iter()
            .map(|c| pref("probe-10ms", c)),
    );
    let config = PolicyConfig {
        dir: dir.path().to_path_buf(),
        // `probe-10ms` is the same file: its compiled artifact comes from this cache.
        cache_dir: Some(dir.path().join(".cache")),
        reload_interval: Duration::ZERO,
        modules: BTreeMap::from([
            python_limits("probe", Duration::from_millis(500)),
            python_limits("probe-10ms", Duration::from_millis(10)),
        ]),
        ..PolicyConfig::default()
    };
    let engine = PolicyEngine::start(&config, &chains).await.unwrap();
    let select = sql("SELECT pan FROM cards");

    // No files, directories, environment (not even the build machine's), sockets or clock.
    let d = engine
        .check(&probe("check:sandbox"), &session(), &select)
        .await;
    assert!(d.policies[0].failure.is_none(), "{:?}", d.policies[0]);
    let report = d.verdict.reason().unwrap().to_string();
    eprintln!("sandbox probe: {report}");
    for expected in [
        "file=Err(",
        "dir=Err(",
        "env=0 ",
        "env_keys=[] ",
        "getenv_home=None",
        "socket=Err(",
        "clock=0 ",
        "argv=[]",
    ] {
        assert!(report.contains(expected), "{expected} not in {report}");
    }
    assert!(
        !report.contains(&built.canary),
        "build env leaked: {report}"
    );

    // Each misbehaviour is a deny with its cause, twice (a failed instance is never reused),
    // and the module keeps answering other configs afterwards.
    let columns = [Column {
        name: "pan".into(),
        type_name: "text".into(),
    }];
    for (chain, cause) in [
        (fast("check:loop"), "deadline"),
        (fast("init:loop"), "deadline"),
        (probe("check:alloc"), "memory-cap"),
    ] {
        for round in 0..2 {
            let started = Instant::now();
            let d = engine.check(&chain, &session(), &select).await;
            assert!(
                matches!(d.verdict, Verdict::Deny(_)),
                "{} round {round}: {:?}",
                chain[0].config,
                d.verdict
            );
            let failure = d.policies[0].failure.as_ref().map(|f| f.cause());
            assert_eq!(failure, Some(cause), "{} round {round}", chain[0].config);
            eprintln!(
                "{}: {} after {:.1?}",
                chain[0].config,
                d.verdict.reason().unwrap(),
                started.elapsed()
            );
            let ok = engine.check(&probe(""), &session(), &select).await;
            assert_eq!(ok.verdict, Verdict::Mask);
        }
    }
    let d = engine.check(&fast("mask:loop"), &session(), &select).await;
    assert_eq!(d.verdict, Verdict::Mask);
    let mut rows = vec![vec![Some("4111111111111111".to_string())]];
    let err = engine
        .mask_rows(&d, &session(), &columns, &mut rows)
        .await
        .unwrap_err();
    assert_eq!(err.error.cause(), "deadline", "{err}");
    assert_eq!(rows[0][0].as_deref(), Some("4111111111111111"));
}

// ------------------------------------------------------------------------------------------
// (e) hot-loading a Python policy while Rust policies serve
// ------------------------------------------------------------------------------------------

/// Phases of the hot-load test, as the serving tasks see them when a call starts.
const BEFORE: usize = 0;
const LOADING: usize = 1;
const AFTER: usize = 2;

/// What one serving task saw, per phase: calls, the slowest call, and failed calls.
#[derive(Debug, Default)]
struct Served {
    calls: [usize; 3],
    slowest: [Duration; 3],
    failures: Vec<String>,
}

/// Hot-load the Python pci-mask into a running engine while four tasks keep its Rust policies
/// busy: the 18.8 MB component compiles off the serving path (on the watcher's thread and
/// wasmtime's compile threads), no call fails before, during or after, and once it is swapped
/// in, the
/// target whose chain names it masks card numbers. Compile time and the slowest call of the
/// Rust-serving tasks in each phase are printed, never asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_policy_hot_loads_while_rust_policies_serve() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let Some(built) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for name in ["sql-guard", "allow-all"] {
        std::fs::copy(policy_wasm(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    }
    let rust = vec![pref("sql-guard", ""), pref("allow-all", "")];
    let cards = vec![pref("sql-guard", ""), pref("pci-mask-py", "")];
    let config = PolicyConfig {
        dir: dir.path().to_path_buf(),
        // Empty: the Python module is compiled, not served from a cache.
        cache_dir: Some(dir.path().join(".cache")),
        reload_interval: Duration::from_millis(50),
        // Wall-clock deadline, and generous. Compiling runs off the serving threads but not
        // off the cores: parallel compilation keeps both busy (other tests of this file
        // compile Python components too), and a serving thread can wait for a core far longer
        // than a call takes. Measured with a debug build, slowest Rust call while the module
        // compiled: 62 ms, 378 ms (other builds running) and 29 ms in three runs, against
        // 4–24 ms before the load. This test asserts that no call fails because of the load;
        // the slowest calls are printed, not asserted.
        deadline: Duration::from_secs(1),
        modules: BTreeMap::from([(
            "pci-mask-py".to_string(),
            ModuleLimits {
                deadline: Some(Duration::from_millis(500)),
                init_deadline: None,
                memory_limit: Some(ByteSize::parse("24MiB").unwrap()),
            },
        )]),
        ..PolicyConfig::default()
    };
    let chains: Vec<PolicyRef> = rust.iter().chain(&cards).cloned().collect();
    let engine = Arc::new(PolicyEngine::start(&config, &chains).await.unwrap());
    let select = sql("SELECT name, pan FROM cards WHERE id = 1");
    let delete = sql("DELETE FROM cards");
    // Before: the chain that names the missing module denies (fail closed).
    let d = engine.check(&cards, &session(), &select).await;
    assert_eq!(
        d.policies[1].failure.as_ref().map(|f| f.cause()),
        Some("missing")
    );

    let phase = Arc::new(AtomicUsize::new(BEFORE));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (engine, rust, phase, stop) =
            (engine.clone(), rust.clone(), phase.clone(), stop.clone());
        let (select, delete) = (select.clone(), delete.clone());
        tasks.push(tokio::spawn(async move {
            let mut served = Served::default();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let at = phase.load(Ordering::Relaxed);
                // Alternately a statement sql-guard allows and one it denies.
                let (command, expected_allow) = if n.is_multiple_of(2) {
                    (&select, true)
                } else {
                    (&delete, false)
                };
                n += 1;
                let started = Instant::now();
                let d = engine.check(&rust, &session(), command).await;
                let took = started.elapsed();
                served.calls[at] += 1;
                served.slowest[at] = served.slowest[at].max(took);
                let failed = d.policies.iter().find_map(|p| p.failure.as_ref());
                let right = (d.verdict == Verdict::Allow) == expected_allow;
                if (failed.is_some() || !right) && served.failures.len() < 5 {
                    served
                        .failures
                        .push(format!("{}: {:?} {failed:?}", command.text(), d.verdict));
                }
                tokio::task::yield_now().await;
            }
            served
        }));
    }
    // Watching the target that names the Python module: `missing` until it is swapped in,
    // then `mask`, and never `missing` again.
    let watcher = {
        let (engine, cards, stop, select) =
            (engine.clone(), cards.clone(), stop.clone(), select.clone());
        tokio::spawn(async move {
            let mut loaded = false;
            while !stop.load(Ordering::Relaxed) {
                let d = engine.check(&cards, &session(), &select).await;
                match d.policies[1].failure.as_ref().map(|f| f.cause()) {
                    Some("missing") => assert!(!loaded, "the Python policy went missing again"),
                    None => {
                        assert_eq!(d.verdict, Verdict::Mask);
                        loaded = true;
                    }
                    Some(other) => panic!("the Python policy failed: {other}: {:?}", d.verdict),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            loaded
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    // Install as an operator should: copy beside, then rename into the watched directory.
    phase.store(LOADING, Ordering::Relaxed);
    let installed = Instant::now();
    let tmp = dir.path().join(".pci-mask-py.wasm.tmp");
    std::fs::copy(&built.pci_mask, &tmp).unwrap();
    std::fs::rename(&tmp, dir.path().join("pci-mask-py.wasm")).unwrap();
    let module = loop {
        if let Some(m) = engine.module("pci-mask-py") {
            break m;
        }
        assert!(
            installed.elapsed() < Duration::from_secs(600),
            "the Python policy was not loaded within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let swapped = installed.elapsed();
    phase.store(AFTER, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = Served::default();
    for t in tasks {
        let served = t.await.unwrap();
        for p in [BEFORE, LOADING, AFTER] {
            total.calls[p] += served.calls[p];
            total.slowest[p] = total.slowest[p].max(served.slowest[p]);
        }
        total.failures.extend(served.failures);
    }
    assert!(
        watcher.await.unwrap(),
        "the watcher never saw the Python policy answer"
    );
    eprintln!(
        "hot-load of pci-mask-py ({} bytes): compile {:.2?}, installed to serving {swapped:.2?} \
         (poll + compile + init); Rust calls before/during/after: {:?}, slowest \
         {:.2?} / {:.2?} / {:.2?}",
        std::fs::metadata(&built.pci_mask).unwrap().len(),
        module.load_time(),
        total.calls,
        total.slowest[BEFORE],
        total.slowest[LOADING],
        total.slowest[AFTER],
    );
    assert!(
        total.failures.is_empty(),
        "calls failed: {:?}",
        total.failures
    );
    // Serving went on while the module compiled: not a stall and a burst afterwards.
    assert!(
        total.calls[LOADING] >= 100,
        "only {} calls were served while the Python module loaded",
        total.calls[LOADING]
    );

    // In effect: the target's chain masks card numbers through the Python policy.
    let d = engine.check(&cards, &session(), &select).await;
    assert_eq!(d.verdict, Verdict::Mask, "{:?}", d.policies);
    assert!(d.policies.iter().all(|p| p.failure.is_none()));
    let columns = ["name", "pan"].map(|name| Column {
        name: name.into(),
        type_name: "text".into(),
    });
    let mut rows: Vec<Row> = vec![vec![
        Some("alice".into()),
        Some("4111 1111 1111 1111".into()),
    ]];
    let summary = engine
        .mask_rows(&d, &session(), &columns, &mut rows)
        .await
        .unwrap();
    assert_eq!(rows[0][0].as_deref(), Some("alice"));
    let masked = rows[0][1].clone().unwrap_or_default();
    assert!(
        masked != "4111 1111 1111 1111" && !masked.contains("4111 1111 1111"),
        "{masked}"
    );
    assert_eq!(summary.edited, vec![(0, 1)]);
}
