//! Commands as policies see them, built from protocol requests: SQL statements ([`sql`]),
//! shell lines ([`shell`]). Adapters call these; the policy engine only receives the results.

pub mod sql;

use crate::policy::Shell;

/// A shell command line, split with POSIX shell-words rules (an unbalanced quote leaves
/// `argv` empty: the policy still sees the raw line).
pub fn shell(line: &str, interactive: bool) -> Shell {
    Shell {
        line: line.to_string(),
        argv: shell_words::split(line).unwrap_or_default(),
        interactive,
    }
}
