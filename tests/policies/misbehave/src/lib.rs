//! `misbehave`: a policy for the engine's fail-closed tests. Its config string says where and
//! how to misbehave, `<phase>:<behaviour>`, phase being `init`, `check` or `mask`:
//! `loop` (spin forever), `alloc` (grow memory without bound), `trap` (panic), `recurse`
//! (unbounded recursion), `huge` (an oversized answer), `error` (return an error), `bad-edit`
//! (an edit outside the batch), `sandbox` (probe files, environment, clock and randomness and
//! report what it got as a deny reason), `redact=COLUMN` (mask phase: replace every cell of
//! that column with `[redacted]`, rule `redact`). Anything else answers allow / mask with no
//! edits.
//! Never ship this.

use warden_policy::{CellEdit, Column, Command, Policy, Row, Session, Verdict, export_policy};

struct Misbehave {
    phase: String,
    behaviour: String,
}

impl Misbehave {
    fn act(&self, phase: &str) -> Option<String> {
        if self.phase != phase {
            return None;
        }
        match self.behaviour.as_str() {
            "loop" => spin(),
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("misbehave: deliberate trap"),
            "recurse" => Some(format!("{}", recurse(1))),
            "huge" => Some("x".repeat(8 << 20)),
            "error" => Some("misbehave: deliberate error".to_string()),
            "sandbox" => Some(probe_sandbox()),
            _ => None,
        }
    }
}

fn spin() -> ! {
    let mut i: u64 = 0;
    loop {
        i = std::hint::black_box(i.wrapping_add(1));
    }
}

#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    // black_box keeps the compiler from turning this into a loop.
    std::hint::black_box(recurse(std::hint::black_box(n + 1))) + 1
}

/// What the sandbox lets through: every probe should come back empty or fixed.
fn probe_sandbox() -> String {
    let file = std::fs::read_to_string("/etc/passwd")
        .map(|s| s.len())
        .map_err(|e| e.kind());
    let dir = std::fs::read_dir(".")
        .map(|d| d.count())
        .map_err(|e| e.kind());
    let env = std::env::vars().count();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(u64::MAX);
    let socket = std::net::TcpStream::connect("127.0.0.1:5432")
        .map(|_| ())
        .map_err(|e| e.kind());
    let mut map = std::collections::HashMap::new();
    map.insert(1, 1);
    format!("file={file:?} dir={dir:?} env={env} clock={now} socket={socket:?}")
}

impl Policy for Misbehave {
    fn init(config: &str) -> Result<Self, String> {
        let (phase, behaviour) = config.split_once(':').unwrap_or(("", ""));
        let me = Misbehave {
            phase: phase.to_string(),
            behaviour: behaviour.to_string(),
        };
        match me.act("init") {
            Some(message) => Err(message),
            None => Ok(me),
        }
    }

    fn check(&self, _session: &Session, _command: &Command) -> Verdict {
        match self.act("check") {
            Some(message) => Verdict::Deny(message),
            None if self.phase == "mask" => Verdict::Mask,
            None => Verdict::Allow,
        }
    }

    fn mask_rows(
        &self,
        _: &Session,
        columns: &[Column],
        rows: &[Row],
    ) -> Result<Vec<CellEdit>, String> {
        if self.phase == "mask" && self.behaviour == "bad-edit" {
            return Ok(vec![CellEdit {
                row: rows.len() as u32,
                column: 0,
                value: None,
                rule: "bad".into(),
            }]);
        }
        if self.phase == "mask" && self.behaviour == "huge" {
            let edit = CellEdit {
                row: 0,
                column: 0,
                value: None,
                rule: "huge".into(),
            };
            return Ok(vec![edit; 1024]);
        }
        if let Some(column) = self.behaviour.strip_prefix("redact=") {
            let Some(c) = columns.iter().position(|c| c.name == column) else {
                return Ok(Vec::new());
            };
            return Ok((0..rows.len())
                .map(|row| CellEdit {
                    row: row as u32,
                    column: c as u32,
                    value: Some("[redacted]".into()),
                    rule: "redact".into(),
                })
                .collect());
        }
        match self.act("mask") {
            Some(message) => Err(message),
            None => Ok(Vec::new()),
        }
    }
}

export_policy!(Misbehave);
