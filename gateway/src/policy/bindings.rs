//! Host-side bindings generated from `wit/policy.wit`, and the plain-data types the rest of the
//! gateway builds commands and sessions with. Adapters use these types without knowing Wasm.

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
    exports: { default: async },
    additional_derives: [PartialEq, Eq],
});

// The world's `use` already brings CellEdit, Column, Command, Session and Verdict in scope.
pub use self::warden::policy::types::{
    Budget, ColumnUsage, ColumnUse, CopyTarget, FileOp, Forward, Http, Kube, OverBudget, Principal,
    Protocol, Shell, Sql, SqlCopy, SqlWrite, StdinKind, TableBudget,
};

impl From<&crate::identity::Principal> for Principal {
    fn from(p: &crate::identity::Principal) -> Self {
        Principal {
            subject: p.subject.clone(),
            issuer: p.issuer.clone(),
            groups: p.groups.clone(),
            actors: p.actors.clone(),
        }
    }
}

impl Command {
    /// The command as one line of text for logs and the audit trail.
    pub fn text(&self) -> String {
        match self {
            Command::Sql(sql) => sql.text.clone(),
            Command::Shell(shell) => shell.line.clone(),
            Command::Http(http) if http.query.is_empty() => {
                format!("{} {}", http.method, http.path)
            }
            Command::Http(http) => format!("{} {}?{}", http.method, http.path, http.query),
            Command::File(f) => match &f.to {
                Some(to) => format!("sftp {} {} {}", f.op, f.path, to),
                None => format!("sftp {} {}", f.op, f.path),
            },
            Command::Forward(f) => format!("forward {} {}:{}", f.direction, f.host, f.port),
        }
    }

    /// A short kind for the audit trail: the SQL statement kind, `shell`, the HTTP method,
    /// `sftp:OP` or `forward:DIRECTION`.
    pub fn kind(&self) -> String {
        match self {
            Command::Sql(sql) => sql.kind.clone(),
            Command::Shell(_) => "shell".to_string(),
            Command::Http(http) => match &http.kube {
                Some(kube) => format!("kube:{}", kube.verb),
                None => http.method.to_lowercase(),
            },
            Command::File(f) => format!("sftp:{}", f.op),
            Command::Forward(f) => format!("forward:{}", f.direction),
        }
    }
}
