//! Session parameters: what a client's start-up message may set upstream, and the settings the
//! gateway pins because they change how the server lexes SQL.
//!
//! `standard_conforming_strings` decides whether `\'` ends a string; `client_encoding` decides
//! whether a byte before a quote is half of a character (SJIS, BIG5, GBK, UHC, GB18030). The
//! gateway reads SQL with the server's grammar under `standard_conforming_strings = on` and
//! UTF-8; it sets both at every upstream login, refuses statements that would change them (SET,
//! set_config, writes to pg_settings, start-up `options`) and ends a session whose server
//! reports anything else (ParameterStatus), whatever changed it.
//!
//! Start-up parameters pass through an allowlist; `options` (server command-line switches such
//! as `-c log_statement=none`) only where a target allows it, and never for a pinned setting.

use crate::command::sql::Unreadable;
use crate::policy::Sql;
use std::collections::BTreeMap;

/// Settings whose value changes lexing, with the value the gateway pins.
pub const PINNED: &[(&str, &str)] = &[
    ("client_encoding", "UTF8"),
    ("standard_conforming_strings", "on"),
];

/// Start-up parameters passed to the server (lower-case; the server's names are
/// case-insensitive). Everything else is dropped; `options` is handled apart.
const ALLOWED: &[&str] = &[
    "application_name",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "search_path",
    "bytea_output",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "lc_messages",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "geqo",
    "jit",
    "work_mem",
];

/// Client encodings the gateway accepts at start-up (overridden to UTF8 upstream; libpq and
/// the drivers follow the server's ParameterStatus). Any other is refused: a client-only
/// encoding (SJIS, BIG5, GBK...) would hide quotes from the gateway.
const ENCODINGS: &[&str] = &["utf8", "unicode", "sqlascii"];

/// The start-up parameters to send upstream, from the client's (without `user` and
/// `database`), or why the connection is refused.
pub fn startup(
    client: &BTreeMap<String, String>,
    allow_options: bool,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (key, value) in client {
        let k = key.to_lowercase();
        match k.as_str() {
            "user" | "database" => {}
            "client_encoding" => {
                let v: String = value
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .collect();
                if !ENCODINGS.contains(&v.as_str()) {
                    return Err(format!(
                        "warden: client_encoding \"{}\" is not supported: the gateway speaks UTF8",
                        printable(value)
                    ));
                }
            }
            "standard_conforming_strings" => {
                if !value.eq_ignore_ascii_case("on") {
                    return Err(
                        "warden: standard_conforming_strings is pinned to on by the gateway".into(),
                    );
                }
            }
            "options" => {
                if !allow_options {
                    return Err("warden: the start-up parameter \"options\" is not allowed on this target (server switches could silence its logging or change how it reads SQL)".into());
                }
                if let Some((name, _)) = PINNED.iter().find(|(n, _)| names_setting(value, n)) {
                    return Err(format!(
                        "warden: \"options\" may not set {name}: the gateway pins it"
                    ));
                }
                out.insert(key.clone(), value.clone());
            }
            "application_name" => {
                out.insert(key.clone(), printable(value));
            }
            k if ALLOWED.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => tracing::debug!(parameter = %printable(key), "start-up parameter not passed on"),
        }
    }
    for (name, value) in PINNED {
        out.insert(name.to_string(), value.to_string());
    }
    Ok(out)
}

/// Whether server switches (`-c name=value`, `--name=value`) mention a setting; `-` and `_`
/// are the same in names there.
fn names_setting(options: &str, setting: &str) -> bool {
    let norm = |s: &str| s.to_lowercase().replace('-', "_");
    norm(options).contains(&norm(setting))
}

/// Printable ASCII only, at most 63 bytes (the server's NAMEDATALEN): an application name ends
/// up in logs and in `pg_stat_activity`.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(63)
        .collect()
}

/// Refuse a statement that would change a pinned setting: SET / RESET of it, `set_config` of
/// it or of a name that is not a literal, or any write to `pg_settings` (its update rule calls
/// set_config).
pub fn check_statement(sql: &Sql) -> Result<(), Unreadable> {
    let pinned = sql
        .settings
        .iter()
        .find(|s| *s == "*" || PINNED.iter().any(|(n, _)| n == s));
    if let Some(name) = pinned {
        let what = if name == "*" {
            "a setting named at run time".to_string()
        } else {
            name.clone()
        };
        return Err(Unreadable {
            code: super::wire::sqlstate::INSUFFICIENT_PRIVILEGE,
            reason: format!(
                "warden: refused: {what} is pinned by the gateway (it decides how the server reads SQL)"
            ),
        });
    }
    let writes_settings = sql.writes.iter().any(|w| is_pg_settings(&w.table))
        || (!matches!(sql.kind.as_str(), "select" | "explain" | "show")
            && sql.tables.iter().any(|t| is_pg_settings(t)));
    if writes_settings {
        return Err(Unreadable {
            code: super::wire::sqlstate::INSUFFICIENT_PRIVILEGE,
            reason: "warden: refused: pg_settings may not be changed through the gateway".into(),
        });
    }
    Ok(())
}

fn is_pg_settings(table: &str) -> bool {
    crate::command::sql::server::last_part(table).eq_ignore_ascii_case("pg_settings")
}

/// A ParameterStatus that breaks a pin: the session must end (`Some(why)`).
pub fn broken_pin(frame_body: &[u8]) -> Option<String> {
    let mut parts = frame_body.split(|&b| b == 0);
    let name = String::from_utf8_lossy(parts.next()?).to_lowercase();
    let value = String::from_utf8_lossy(parts.next()?).into_owned();
    let (_, pinned) = PINNED.iter().find(|(n, _)| *n == name)?;
    (!value.eq_ignore_ascii_case(pinned)).then(|| {
        format!("warden: the server reports {name} = {value}; the gateway pins {pinned}; terminating the session")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn startup_allowlist_and_pins() {
        let out = startup(
            &params(&[
                ("user", "x"),
                ("database", "db"),
                ("client_encoding", "SQL_ASCII"),
                ("DateStyle", "ISO"),
                ("application_name", "psql\u{1b}[2J"),
                ("session_replication_role", "replica"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(out.get("client_encoding").unwrap(), "UTF8");
        assert_eq!(out.get("standard_conforming_strings").unwrap(), "on");
        assert_eq!(out.get("DateStyle").unwrap(), "ISO");
        assert_eq!(out.get("application_name").unwrap(), "psql[2J");
        assert!(!out.contains_key("session_replication_role"));
        assert!(!out.contains_key("user"));

        assert!(startup(&params(&[("client_encoding", "SJIS")]), false).is_err());
        assert!(startup(&params(&[("standard_conforming_strings", "off")]), false).is_err());
        let e = startup(&params(&[("options", "-c log_statement=none")]), false).unwrap_err();
        assert!(e.contains("options"), "{e}");
        assert!(startup(&params(&[("options", "-c geqo=off")]), true).is_ok());
        assert!(
            startup(
                &params(&[("options", "--standard-conforming-strings=off")]),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn pinned_settings_are_refused_and_reported_breaks_end_sessions() {
        let mut s = warden_policy_blank();
        s.settings = vec!["client_encoding".into()];
        assert!(check_statement(&s).is_err());
        s.settings = vec!["*".into()];
        assert!(check_statement(&s).is_err());
        s.settings = vec!["search_path".into()];
        assert!(check_statement(&s).is_ok());
        s.settings.clear();
        s.kind = "update".into();
        s.tables = vec!["pg_catalog.pg_settings".into()];
        assert!(check_statement(&s).is_err());

        assert!(broken_pin(b"client_encoding\0SJIS\0").is_some());
        assert!(broken_pin(b"standard_conforming_strings\0off\0").is_some());
        assert!(broken_pin(b"client_encoding\0UTF8\0").is_none());
        assert!(broken_pin(b"TimeZone\0UTC\0").is_none());
    }

    fn warden_policy_blank() -> Sql {
        Sql {
            statement_type: "VariableSetStmt".into(),
            ..crate::command::sql::record("", "set")
        }
    }
}
