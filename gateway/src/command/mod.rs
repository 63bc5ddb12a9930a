//! Commands as policies see them, built from protocol requests: SQL statements ([`sql`]),
//! shell lines ([`shell`]). Adapters call these; the policy engine only receives the results.

pub mod shell;
pub mod sql;

pub use shell::shell;
