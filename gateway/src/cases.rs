//! Policy case files: run a policy module offline against commands and row batches with the
//! expected verdicts and edits, the way `warden policy test MODULE CASES` does before a module
//! is hot-loaded. SQL in a case is parsed by the same code as in production, so a case file is
//! a faithful rehearsal.
//!
//! Format (TOML): top-level `config` (the policy's init config) and `[session]` defaults, then
//! `[[case]]` entries with one of `sql`, `shell`, `http`, `file`, `forward` and an `expect`ed verdict, and/or
//! `columns` + `rows` with `expect_rows` or `expect_error`. A cell written `'\N'` is NULL.

use crate::policy::{
    Column, Command, Decision, FileOp, Forward, Http, Kube, PolicyConfig, PolicyEngine,
    PolicyError, PolicyRef, Principal, Protocol, Row, Session, Verdict,
};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::Path;

/// The text that stands for NULL in case files (as in COPY's text format).
pub const NULL_CELL: &str = "\\N";

/// A whole case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The policy's init config: a string, or a table passed as JSON.
    #[serde(default)]
    pub config: Option<toml::Value>,
    /// Defaults for every case's session.
    #[serde(default)]
    pub session: SessionSpec,
    /// Limits the policy needs, as its `[policy.modules.NAME]` entry would give them (an
    /// interpreted policy needs a bigger memory cap); they override the command line's.
    #[serde(default)]
    pub limits: crate::policy::ModuleLimits,
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

/// Session fields; anything left out takes a neutral default.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    pub protocol: Option<Protocol>,
    pub target: Option<String>,
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub groups: Option<Vec<String>>,
    pub actors: Option<Vec<String>>,
    pub client_addr: Option<String>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub sql: Option<String>,
    pub shell: Option<String>,
    #[serde(default)]
    pub interactive: bool,
    pub http: Option<HttpSpec>,
    /// An SFTP operation: `{ op = "open-write", path = "/etc/x", to = "..." }`.
    pub file: Option<FileSpec>,
    /// A port forward: `{ direction = "local", host = "db", port = 5432 }`.
    pub forward: Option<ForwardSpec>,
    /// `allow`, `mask`, `deny` or `require-approval`.
    pub expect: Option<String>,
    /// Text the deny / require-approval reason must contain.
    pub reason: Option<String>,
    pub columns: Option<Vec<ColumnSpec>>,
    pub rows: Option<Vec<Vec<String>>>,
    pub expect_rows: Option<Vec<Vec<String>>>,
    pub expect_error: Option<String>,
    pub session: Option<SessionSpec>,
}

/// An HTTP request in a case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
    pub kube: Option<KubeSpec>,
}

/// An SFTP file operation in a case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub op: String,
    pub path: String,
    pub to: Option<String>,
}

/// A port-forwarding request in a case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSpec {
    pub direction: String,
    #[serde(default)]
    pub host: String,
    pub port: u32,
}

/// Kubernetes request info in a case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubeSpec {
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// A column: `"pan"` or `{ name = "pan", type = "varchar" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ColumnSpec {
    Name(String),
    Typed {
        name: String,
        #[serde(rename = "type")]
        type_name: String,
    },
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    /// Empty when the case passed; otherwise what differed, one line each.
    pub diffs: Vec<String>,
}

/// Why a case file could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: {1}")]
    Parse(String, toml::de::Error),
    #[error("cannot load the policy: {0}")]
    Load(#[from] PolicyError),
}

impl CaseFile {
    pub fn load(path: &Path) -> Result<CaseFile, CasesError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CasesError::Read(path.display().to_string(), e))?;
        toml::from_str(&text).map_err(|e| CasesError::Parse(path.display().to_string(), e))
    }

    fn config_string(&self) -> String {
        match &self.config {
            None => String::new(),
            Some(toml::Value::String(s)) => s.clone(),
            Some(other) => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

/// Load `module` with the file's config and run every case.
pub async fn run(
    limits: &PolicyConfig,
    module: &Path,
    file: &CaseFile,
) -> Result<Vec<CaseResult>, CasesError> {
    let mut limits = limits.clone();
    if let Some(d) = file.limits.deadline {
        limits.deadline = d;
    }
    if let Some(d) = file.limits.init_deadline {
        limits.init_deadline = d;
    }
    if let Some(m) = file.limits.memory_limit {
        limits.memory_limit = m;
    }
    let (engine, policy) = PolicyEngine::single(&limits, module, &file.config_string()).await?;
    let mut results = Vec::with_capacity(file.cases.len());
    for case in &file.cases {
        let session = session(&file.session, case.session.as_ref());
        let diffs = run_case(&engine, &policy, &session, case).await;
        results.push(CaseResult {
            name: case.name.clone(),
            diffs,
        });
    }
    Ok(results)
}

async fn run_case(
    engine: &PolicyEngine,
    policy: &PolicyRef,
    session: &Session,
    case: &Case,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let chain = std::slice::from_ref(policy);
    let commands = match commands(case) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut decision: Option<Decision> = None;
    if !commands.is_empty() {
        let d = Decision::combine_all(&engine.check_all(chain, session, &commands).await);
        compare_verdict(case, &d, &mut diffs);
        decision = Some(d);
    } else if case.expect.is_some() {
        diffs.push("`expect` needs one of `sql`, `shell`, `http`, `file` or `forward`".to_string());
    }
    if let Some(rows) = &case.rows {
        // Without a command (or when it was not answered `mask`), ask as if it had been.
        let decision = match decision {
            Some(d) if d.verdict == Verdict::Mask => d,
            _ => engine.assume_mask(chain),
        };
        compare_rows(engine, &decision, session, case, rows, &mut diffs).await;
    } else if case.expect_rows.is_some() || case.expect_error.is_some() {
        diffs.push("`expect_rows` / `expect_error` need `rows`".to_string());
    }
    diffs
}

fn commands(case: &Case) -> Result<Vec<Command>, String> {
    let given = [
        case.sql.is_some(),
        case.shell.is_some(),
        case.http.is_some(),
        case.file.is_some(),
        case.forward.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(
            "a case takes only one of `sql`, `shell`, `http`, `file`, `forward`".to_string(),
        );
    }
    if let Some(f) = &case.file {
        return Ok(vec![Command::File(FileOp {
            op: f.op.clone(),
            path: f.path.clone(),
            to: f.to.clone(),
        })]);
    }
    if let Some(f) = &case.forward {
        return Ok(vec![Command::Forward(Forward {
            direction: f.direction.clone(),
            host: f.host.clone(),
            port: f.port,
        })]);
    }
    if let Some(sql) = &case.sql {
        // Text the gateway refuses before any policy (a syntax error, a differential) cannot
        // be a policy case: say why.
        let statements = crate::command::sql::parse(sql)
            .map_err(|e| format!("the gateway itself refuses this `sql`: {}", e.reason))?;
        if statements.is_empty() {
            return Err("`sql` holds no statement".to_string());
        }
        return Ok(statements
            .into_iter()
            .map(|s| Command::Sql(s.sql))
            .collect());
    }
    if let Some(line) = &case.shell {
        return Ok(vec![Command::Shell(crate::command::shell(
            line,
            case.interactive,
        ))]);
    }
    if let Some(h) = &case.http {
        let kube = h.kube.as_ref().map(|k| Kube {
            verb: k.verb.clone(),
            api_group: k.api_group.clone(),
            resource: k.resource.clone(),
            subresource: k.subresource.clone(),
            namespace: k.namespace.clone(),
            name: k.name.clone(),
        });
        return Ok(vec![Command::Http(Http {
            method: h.method.to_uppercase(),
            path: h.path.clone(),
            query: h.query.clone(),
            headers: h
                .headers
                .iter()
                .map(|(k, v)| (k.to_lowercase(), v.clone()))
                .collect(),
            body: h.body.clone().into_bytes(),
            kube,
        })]);
    }
    Ok(Vec::new())
}

fn compare_verdict(case: &Case, got: &Decision, diffs: &mut Vec<String>) {
    let Some(expect) = &case.expect else {
        diffs.push(format!(
            "no `expect` for the command (it got {})",
            describe(got)
        ));
        return;
    };
    if !["allow", "mask", "deny", "require-approval"].contains(&expect.as_str()) {
        diffs.push(format!(
            "unknown expect `{expect}` (allow, mask, deny, require-approval)"
        ));
        return;
    }
    let name_ok = got.verdict.name() == expect;
    let reason_ok = match &case.reason {
        None => true,
        Some(want) => got
            .verdict
            .reason()
            .is_some_and(|r| r.contains(want.as_str())),
    };
    if !name_ok || !reason_ok {
        let mut want = expect.clone();
        if let Some(r) = &case.reason {
            let _ = write!(want, " (reason containing {r:?})");
        }
        diffs.push(format!("verdict: expected {want}, got {}", describe(got)));
    }
}

fn describe(d: &Decision) -> String {
    let mut s = d.verdict.name().to_string();
    if let Some(r) = d.verdict.reason() {
        let _ = write!(s, " {r:?}");
    }
    for p in d.policies.iter().filter(|p| p.failure.is_some()) {
        let _ = write!(
            s,
            " [{} failed: {}]",
            p.policy,
            p.failure.as_ref().map(|f| f.cause()).unwrap_or("")
        );
    }
    s
}

async fn compare_rows(
    engine: &PolicyEngine,
    decision: &Decision,
    session: &Session,
    case: &Case,
    rows: &[Vec<String>],
    diffs: &mut Vec<String>,
) {
    let columns: Vec<Column> = match &case.columns {
        Some(cols) => cols.iter().map(column).collect(),
        None => {
            let width = rows.first().map_or(0, Vec::len);
            (0..width)
                .map(|i| Column {
                    name: format!("column{i}"),
                    type_name: "text".into(),
                })
                .collect()
        }
    };
    let mut batch: Vec<Row> = rows
        .iter()
        .map(|r| r.iter().map(|c| from_cell(c)).collect())
        .collect();
    let result = engine
        .mask_rows(decision, session, &columns, &mut batch)
        .await;
    match (result, &case.expect_error) {
        (Ok(_), Some(want)) => diffs.push(format!(
            "rows: expected an error containing {want:?}, got rows"
        )),
        (Err(e), None) => diffs.push(format!("rows: expected rows, got error: {e}")),
        (Err(e), Some(want)) if !e.to_string().contains(want.as_str()) => diffs.push(format!(
            "rows: expected an error containing {want:?}, got: {e}"
        )),
        (Err(_), Some(_)) => {}
        (Ok(_), None) => {
            let Some(expected) = &case.expect_rows else {
                diffs.push("rows given without `expect_rows` or `expect_error`".to_string());
                return;
            };
            let got: Vec<Vec<String>> = batch
                .iter()
                .map(|r| r.iter().map(to_cell).collect())
                .collect();
            if got.len() != expected.len() {
                diffs.push(format!(
                    "rows: expected {} rows, got {}",
                    expected.len(),
                    got.len()
                ));
            }
            for (i, (want, have)) in expected.iter().zip(&got).enumerate() {
                if want != have {
                    diffs.push(format!("row {i}: expected {want:?}, got {have:?}"));
                }
            }
        }
    }
}

fn column(spec: &ColumnSpec) -> Column {
    match spec {
        ColumnSpec::Name(name) => Column {
            name: name.clone(),
            type_name: "text".into(),
        },
        ColumnSpec::Typed { name, type_name } => Column {
            name: name.clone(),
            type_name: type_name.clone(),
        },
    }
}

fn from_cell(c: &str) -> Option<String> {
    (c != NULL_CELL).then(|| c.to_string())
}

fn to_cell(c: &Option<String>) -> String {
    c.clone().unwrap_or_else(|| NULL_CELL.to_string())
}

fn session(defaults: &SessionSpec, over: Option<&SessionSpec>) -> Session {
    let pick = |f: fn(&SessionSpec) -> Option<String>, fallback: &str| {
        over.and_then(f)
            .or_else(|| f(defaults))
            .unwrap_or_else(|| fallback.to_string())
    };
    let subject = pick(|s| s.subject.clone(), "tester");
    let groups = over
        .and_then(|s| s.groups.clone())
        .or_else(|| defaults.groups.clone())
        .unwrap_or_default();
    let actors = over
        .and_then(|s| s.actors.clone())
        .or_else(|| defaults.actors.clone())
        .unwrap_or_else(|| vec![subject.clone()]);
    let protocol = over
        .and_then(|s| s.protocol)
        .or(defaults.protocol)
        .unwrap_or(Protocol::Postgres);
    Session {
        id: "policy-test".to_string(),
        protocol,
        target: pick(|s| s.target.clone(), "test"),
        principal: Principal {
            subject,
            issuer: pick(|s| s.issuer.clone(), "warden-policy-test"),
            groups,
            actors,
        },
        client_addr: pick(|s| s.client_addr.clone(), "127.0.0.1:0"),
    }
}

/// Render results as `warden policy test` prints them; the last line is `N passed, M failed`.
pub fn report(results: &[CaseResult]) -> String {
    let mut out = String::new();
    for r in results {
        if r.diffs.is_empty() {
            let _ = writeln!(out, "PASS  {}", r.name);
        } else {
            let _ = writeln!(out, "FAIL  {}", r.name);
            for d in &r.diffs {
                let _ = writeln!(out, "        {d}");
            }
        }
    }
    let failed = results.iter().filter(|r| !r.diffs.is_empty()).count();
    let _ = writeln!(out, "{} passed, {failed} failed", results.len() - failed);
    out
}
