//! Server-side functions sql-guard refuses, and how a called name is matched against them.
//!
//! Names are compared by their last part (`pg_catalog.pg_read_file` is `pg_read_file`) and
//! ignoring ASCII case. An entry ending in `*` is a family: it covers every name starting with
//! what comes before the `*` (`dblink*` covers `dblink`, `dblink_exec`, `dblink_fetch`, ...).
//! Families are used where PostgreSQL or an extension keeps adding members, so a new one is
//! refused without a new release of this policy.

use warden_policy::sql::unqualified;

/// Server-side functions refused by default, with what they do.
pub const DENIED_FUNCTIONS: &[(&str, &str)] = &[
    // SQL in a string: the gateway never sees the statement these run.
    ("query_to_xml*", RUNS_SQL_TEXT), // query_to_xml, _and_xmlschema, query_to_xmlschema
    ("cursor_to_xml*", READS_CURSOR), // cursor_to_xml, cursor_to_xmlschema
    ("table_to_xml*", READS_NAMED),   // table_to_xml, _and_xmlschema, table_to_xmlschema
    ("schema_to_xml*", READS_NAMED),
    ("database_to_xml*", READS_NAMED),
    ("ts_stat", RUNS_SQL_TEXT),
    ("ts_rewrite", RUNS_SQL_TEXT), // its two-argument form runs a query given as text
    // The database server's files.
    ("pg_read_*", READS_FILES), // pg_read_file, pg_read_binary_file
    ("pg_ls_*", READS_FILES),   // pg_ls_dir, pg_ls_logdir, pg_ls_waldir, pg_ls_tmpdir, ...
    ("pg_stat_file", READS_FILES),
    ("pg_logdir_ls", READS_FILES),
    ("pg_hba_file_rules", READS_FILES),
    ("pg_ident_file_mappings", READS_FILES),
    ("pg_show_all_file_settings", READS_FILES),
    ("lo_import", READS_FILES),
    ("lo_export", WRITES_FILES),
    // Large objects are not table rows: a write budget cannot count what these change.
    ("lo_unlink", LARGE_OBJECTS),
    ("lo_put", LARGE_OBJECTS),
    ("lo_truncate*", LARGE_OBJECTS),
    ("lo_from_bytea", LARGE_OBJECTS),
    ("lo_create", LARGE_OBJECTS),
    ("lo_creat", LARGE_OBJECTS),
    ("lowrite", LARGE_OBJECTS),
    ("pg_file_*", FILES), // adminpack: pg_file_write, _rename, _unlink, _sync; pg_file_settings
    // Other servers.
    ("dblink*", OTHER_SERVERS),
    // Other sessions.
    ("pg_terminate_backend", OTHER_SESSIONS),
    ("pg_cancel_backend", OTHER_SESSIONS),
    ("pg_signal_backend", OTHER_SESSIONS),
    // Replication.
    ("pg_create_physical_replication_slot", REPLICATION),
    ("pg_create_logical_replication_slot", REPLICATION),
    ("pg_copy_physical_replication_slot", REPLICATION),
    ("pg_copy_logical_replication_slot", REPLICATION),
    ("pg_drop_replication_slot", REPLICATION),
    ("pg_replication_slot_advance", REPLICATION),
    ("pg_sync_replication_slots", REPLICATION),
    ("pg_logical_slot_*", REPLICATION), // get/peek (binary) changes
    ("pg_logical_emit_message", REPLICATION),
    ("pg_replication_origin_*", REPLICATION),
    // Write-ahead log, backups, recovery.
    ("pg_switch_wal", WAL),
    ("pg_switch_xlog", WAL),
    ("pg_backup_start", WAL),
    ("pg_backup_stop", WAL),
    ("pg_start_backup", WAL),
    ("pg_stop_backup", WAL),
    ("pg_create_restore_point", WAL),
    ("pg_log_standby_snapshot", WAL),
    ("pg_wal_replay_*", WAL),  // pause, resume
    ("pg_xlog_replay_*", WAL), // their names before PostgreSQL 10
    // Server-wide state.
    ("pg_reload_conf", SERVER_STATE),
    ("pg_rotate_logfile", SERVER_STATE),
    ("pg_logfile_rotate", SERVER_STATE),
    ("pg_promote", SERVER_STATE),
];
const RUNS_SQL_TEXT: &str = "it runs SQL given as text, which the gateway cannot check";
const READS_CURSOR: &str =
    "it reads a cursor's rows by name, out of the gateway's sight; FETCH them instead";
const READS_NAMED: &str =
    "it reads every row of tables named in a string, which the gateway cannot check";
const READS_FILES: &str = "it reads files on the database server";
const LARGE_OBJECTS: &str =
    "it changes large objects, which are not table rows: a write budget cannot count them";
const WRITES_FILES: &str = "it writes files on the database server";
const FILES: &str = "it reads or writes files on the database server";
const OTHER_SERVERS: &str = "it connects from the database server to other servers";
const OTHER_SESSIONS: &str = "it stops or signals other sessions";
const REPLICATION: &str =
    "it creates, reads or changes replication state (slots, origins, the change stream)";
const WAL: &str = "it controls the server's write-ahead log, backups or recovery";
const SERVER_STATE: &str = "it changes server-wide state";
/// Why a function from `deny_functions` is refused.
pub const CONFIGURED: &str = "it is denied by this gateway's configuration";

/// Whether `name` (a called name, possibly schema-qualified) is covered by `pattern` (a bare
/// name, or a prefix followed by `*`).
pub fn matches(pattern: &str, name: &str) -> bool {
    let name = unqualified(name);
    match pattern.strip_suffix('*') {
        Some(prefix) => name
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix)),
        None => name.eq_ignore_ascii_case(pattern),
    }
}

/// Whether `pattern` is a usable bare name or family: not empty, no schema, at most one `*`
/// and only at the end, something before it.
pub fn valid_pattern(pattern: &str) -> bool {
    let stem = pattern.strip_suffix('*').unwrap_or(pattern);
    !stem.is_empty() && !stem.contains(['.', '*'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_match_the_last_part_in_any_case() {
        assert!(matches("lo_export", "lo_export"));
        assert!(matches("lo_export", "pg_catalog.lo_export"));
        assert!(matches("lo_export", "LO_EXPORT"));
        assert!(!matches("lo_export", "lo_export2"));
        assert!(!matches("lo_export", "lo_expor"));
    }

    #[test]
    fn families_match_by_prefix() {
        for name in [
            "dblink",
            "dblink_exec",
            "public.dblink_fetch",
            "DBLINK_connect_u",
        ] {
            assert!(matches("dblink*", name), "{name}");
        }
        assert!(!matches("dblink*", "dblin"));
        assert!(!matches("pg_ls_*", "pg_lsn"));
        // A multi-byte name shorter or not split at the prefix length is no match, not a panic.
        assert!(!matches("pg_ls_*", "pg_lé"));
        assert!(!matches("pg_ls_*", "pg_lséééé"));
    }

    #[test]
    fn every_family_of_the_brief_is_covered() {
        let denied = |name: &str| DENIED_FUNCTIONS.iter().any(|(p, _)| matches(p, name));
        for name in [
            "query_to_xml",
            "query_to_xml_and_xmlschema",
            "query_to_xmlschema",
            "cursor_to_xml",
            "cursor_to_xmlschema",
            "table_to_xml",
            "table_to_xmlschema",
            "table_to_xml_and_xmlschema",
            "schema_to_xml",
            "schema_to_xml_and_xmlschema",
            "database_to_xmlschema",
            "dblink_get_result",
            "lo_import",
            "lo_export",
            "lo_unlink",
            "lo_put",
            "lo_truncate64",
            "lo_from_bytea",
            "lo_create",
            "pg_read_binary_file",
            "pg_ls_logicalsnapdir",
            "pg_stat_file",
            "pg_file_write",
            "pg_terminate_backend",
            "pg_cancel_backend",
            "pg_signal_backend",
            "pg_create_logical_replication_slot",
            "pg_create_physical_replication_slot",
            "pg_drop_replication_slot",
            "pg_replication_slot_advance",
            "pg_logical_slot_get_changes",
            "pg_logical_slot_peek_binary_changes",
            "pg_copy_logical_replication_slot",
            "pg_logical_emit_message",
            "pg_switch_wal",
            "pg_backup_start",
            "pg_backup_stop",
            "pg_start_backup",
            "pg_stop_backup",
            "pg_create_restore_point",
            "pg_wal_replay_pause",
            "pg_wal_replay_resume",
            "pg_reload_conf",
            "pg_rotate_logfile",
            "pg_promote",
        ] {
            assert!(denied(name), "{name}");
        }
        for name in [
            "pg_advisory_lock",
            "pg_advisory_xact_lock",
            "pg_try_advisory_lock",
            "lo_get",
            "set_config",
            "current_setting",
            "xmlagg",
            "pg_sleep",
            "now",
        ] {
            assert!(!denied(name), "{name}");
        }
    }

    #[test]
    fn patterns_are_bare_names_or_prefixes() {
        for good in ["my_fn", "my_*", "f"] {
            assert!(valid_pattern(good), "{good}");
        }
        for bad in ["", "*", "public.f", "a*b", "a**", "*a"] {
            assert!(!valid_pattern(bad), "{bad}");
        }
        assert!(DENIED_FUNCTIONS.iter().all(|(p, _)| valid_pattern(p)));
    }
}
