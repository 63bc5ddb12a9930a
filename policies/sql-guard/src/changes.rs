//! Code, privilege and configuration changes: the statement types and settings sql-guard holds
//! for approval (or denies, or allows: config `code_changes`).
//!
//! Matched on `statement-type`, PostgreSQL's own parse-node name for the statement (from the
//! server's grammar, so no spelling hides one), and on `settings` for SET / RESET.

/// Statement types that define code or change privileges or configuration: the type, how a
/// person calls it, and why it needs a second look.
pub const CODE_CHANGES: &[(&str, &str, &str)] = &[
    // Code that runs later, or inside the server.
    ("CreateFunctionStmt", "CREATE FUNCTION / PROCEDURE", CODE),
    (
        "AlterFunctionStmt",
        "ALTER FUNCTION / PROCEDURE",
        ALTERS_CODE,
    ),
    ("DoStmt", "a DO block", RUNS_CODE),
    ("CreateTrigStmt", "CREATE TRIGGER", TRIGGER),
    ("CreateEventTrigStmt", "CREATE EVENT TRIGGER", EVENT_TRIGGER),
    ("AlterEventTrigStmt", "ALTER EVENT TRIGGER", EVENT_TRIGGER),
    ("RuleStmt", "CREATE RULE", RULE),
    ("CreateExtensionStmt", "CREATE EXTENSION", EXTENSION),
    ("AlterExtensionStmt", "ALTER EXTENSION", EXTENSION),
    (
        "AlterExtensionContentsStmt",
        "ALTER EXTENSION ADD / DROP",
        EXTENSION,
    ),
    ("CreatePLangStmt", "CREATE LANGUAGE", LANGUAGE),
    ("CreateCastStmt", "CREATE CAST", CALLS_FUNCTIONS),
    (
        "DefineStmt",
        "CREATE AGGREGATE / OPERATOR / TYPE",
        CALLS_FUNCTIONS,
    ),
    ("AlterOperatorStmt", "ALTER OPERATOR", CALLS_FUNCTIONS),
    (
        "CreateOpClassStmt",
        "CREATE OPERATOR CLASS",
        CALLS_FUNCTIONS,
    ),
    (
        "CreateOpFamilyStmt",
        "CREATE OPERATOR FAMILY",
        CALLS_FUNCTIONS,
    ),
    (
        "AlterOpFamilyStmt",
        "ALTER OPERATOR FAMILY",
        CALLS_FUNCTIONS,
    ),
    ("CreateTransformStmt", "CREATE TRANSFORM", CALLS_FUNCTIONS),
    ("CreateConversionStmt", "CREATE CONVERSION", CALLS_FUNCTIONS),
    ("CreateAmStmt", "CREATE ACCESS METHOD", CALLS_FUNCTIONS),
    ("LoadStmt", "LOAD", LOAD),
    // Reaching outside the database.
    ("CreateFdwStmt", "CREATE FOREIGN DATA WRAPPER", FOREIGN),
    ("AlterFdwStmt", "ALTER FOREIGN DATA WRAPPER", FOREIGN),
    ("CreateForeignServerStmt", "CREATE SERVER", FOREIGN),
    ("AlterForeignServerStmt", "ALTER SERVER", FOREIGN),
    ("CreateUserMappingStmt", "CREATE USER MAPPING", USER_MAPPING),
    ("AlterUserMappingStmt", "ALTER USER MAPPING", USER_MAPPING),
    ("CreateForeignTableStmt", "CREATE FOREIGN TABLE", FOREIGN),
    ("ImportForeignSchemaStmt", "IMPORT FOREIGN SCHEMA", FOREIGN),
    (
        "CreateSubscriptionStmt",
        "CREATE SUBSCRIPTION",
        SUBSCRIPTION,
    ),
    ("AlterSubscriptionStmt", "ALTER SUBSCRIPTION", SUBSCRIPTION),
    ("CreatePublicationStmt", "CREATE PUBLICATION", PUBLICATION),
    ("AlterPublicationStmt", "ALTER PUBLICATION", PUBLICATION),
    // Privileges.
    ("CreateRoleStmt", "CREATE ROLE / USER", ROLE),
    ("AlterRoleStmt", "ALTER ROLE", ROLE),
    ("AlterRoleSetStmt", "ALTER ROLE ... SET", ROLE_SETTINGS),
    ("DropRoleStmt", "DROP ROLE", ROLE),
    ("AlterOwnerStmt", "ALTER ... OWNER TO", OWNER),
    ("ReassignOwnedStmt", "REASSIGN OWNED", OWNER),
    ("DropOwnedStmt", "DROP OWNED", DROP_OWNED),
    (
        "AlterDefaultPrivilegesStmt",
        "ALTER DEFAULT PRIVILEGES",
        DEFAULT_PRIVILEGES,
    ),
    ("CreatePolicyStmt", "CREATE POLICY", ROW_SECURITY),
    ("AlterPolicyStmt", "ALTER POLICY", ROW_SECURITY),
    ("SecLabelStmt", "SECURITY LABEL", SECURITY_LABEL),
    // Configuration of the database and the server.
    ("CreatedbStmt", "CREATE DATABASE", DATABASE),
    ("AlterDatabaseStmt", "ALTER DATABASE", DATABASE),
    (
        "AlterDatabaseSetStmt",
        "ALTER DATABASE ... SET",
        DATABASE_SETTINGS,
    ),
    ("DropdbStmt", "DROP DATABASE", DATABASE),
    ("AlterSystemStmt", "ALTER SYSTEM", SYSTEM),
    ("CreateTableSpaceStmt", "CREATE TABLESPACE", TABLESPACE),
    // Other sessions.
    ("LockStmt", "LOCK", LOCK),
];
const CODE: &str = "it defines code that runs inside the database server whenever it is called";
const ALTERS_CODE: &str =
    "it changes how code runs (SECURITY DEFINER, search_path, owner's privileges)";
const RUNS_CODE: &str = "it runs procedural code the gateway cannot read";
const TRIGGER: &str = "it defines code that runs on every change of a table, whoever makes it";
const EVENT_TRIGGER: &str = "it defines code that runs on every schema change in the database";
const RULE: &str = "it rewrites later statements on a table into other statements";
const EXTENSION: &str = "it installs or changes server-side code (an extension)";
const LANGUAGE: &str = "it adds a procedural language to run code in";
const CALLS_FUNCTIONS: &str = "it makes ordinary SQL call functions it names, implicitly";
const LOAD: &str = "it loads a shared library into the database server";
const FOREIGN: &str = "it connects the database to data or servers outside it";
const USER_MAPPING: &str = "it stores credentials for connecting to another server";
const SUBSCRIPTION: &str = "it replicates data from another server into this one";
const PUBLICATION: &str = "it publishes tables' changes for other servers to replicate";
const ROLE: &str = "it creates, changes or removes a role and its privileges";
const ROLE_SETTINGS: &str = "it changes the settings of every future session of a role";
const OWNER: &str = "it changes who owns objects, and with it who may change or drop them";
const DROP_OWNED: &str = "it drops every object a role owns and revokes its privileges";
const DEFAULT_PRIVILEGES: &str = "it changes the privileges of every object created later";
const ROW_SECURITY: &str = "it changes which rows row-level security lets each role see";
const SECURITY_LABEL: &str = "it changes a security label that a label provider enforces";
const DATABASE: &str = "it creates, changes or removes a whole database";
const DATABASE_SETTINGS: &str = "it changes the settings of every future session in a database";
const SYSTEM: &str = "it changes the server's configuration file";
const TABLESPACE: &str = "it makes the server write to a directory of its filesystem";
const LOCK: &str = "an explicit table lock can block every other session until it ends";

/// Run-time settings whose change needs approval (SET / RESET) or is refused (`set_config`),
/// with why.
pub const PROTECTED_SETTINGS: &[(&str, &str)] = &[
    ("role", "it switches to another role's privileges"),
    ("session_authorization", "it acts as another user"),
    (
        "session_replication_role",
        "`replica` turns off triggers and foreign-key checks",
    ),
    (
        "all",
        "it resets every setting at once, those the gateway relies on included",
    ),
    (
        "*",
        "its setting's name is computed, so any setting could change",
    ),
];

/// The entry for `statement_type`, if it is a code change.
pub fn code_change(statement_type: &str) -> Option<(&'static str, &'static str)> {
    CODE_CHANGES
        .iter()
        .find(|(t, _, _)| *t == statement_type)
        .map(|(_, what, why)| (*what, *why))
}

/// Why changing `setting` is protected, if it is.
pub fn protected(setting: &str) -> Option<&'static str> {
    PROTECTED_SETTINGS
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(setting))
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_type_of_the_brief_is_a_code_change() {
        for t in [
            "CreateFunctionStmt",
            "AlterFunctionStmt",
            "CreateTrigStmt",
            "CreateEventTrigStmt",
            "RuleStmt",
            "CreateExtensionStmt",
            "AlterExtensionStmt",
            "AlterExtensionContentsStmt",
            "CreateFdwStmt",
            "CreateForeignServerStmt",
            "CreateUserMappingStmt",
            "CreateForeignTableStmt",
            "ImportForeignSchemaStmt",
            "CreatePLangStmt",
            "CreateRoleStmt",
            "AlterRoleStmt",
            "AlterRoleSetStmt",
            "DropRoleStmt",
            "CreatedbStmt",
            "AlterDatabaseStmt",
            "AlterDatabaseSetStmt",
            "CreateCastStmt",
            "DefineStmt",
            "AlterSystemStmt",
            "AlterDefaultPrivilegesStmt",
            "CreatePolicyStmt",
            "AlterPolicyStmt",
            "AlterOwnerStmt",
            "DoStmt",
            "LockStmt",
            "LoadStmt",
        ] {
            assert!(code_change(t).is_some(), "{t}");
        }
        for t in [
            "SelectStmt",
            "UpdateStmt",
            "VariableSetStmt",
            "ExecuteStmt",
            "CreateStmt",
            "IndexStmt",
            "ViewStmt",
            "GrantStmt",
            "",
            "createfunctionstmt",
        ] {
            assert!(code_change(t).is_none(), "{t}");
        }
    }

    #[test]
    fn the_list_has_no_duplicates_and_every_entry_says_what_and_why() {
        for (i, (t, what, why)) in CODE_CHANGES.iter().enumerate() {
            assert!(
                t.ends_with("Stmt") && !what.is_empty() && !why.is_empty(),
                "{t}"
            );
            assert!(!CODE_CHANGES[..i].iter().any(|(u, _, _)| u == t), "{t}");
        }
    }

    #[test]
    fn protected_settings() {
        for s in [
            "role",
            "session_authorization",
            "session_replication_role",
            "all",
            "*",
        ] {
            assert!(protected(s).is_some(), "{s}");
        }
        assert!(protected("ROLE").is_some());
        for s in [
            "search_path",
            "statement_timeout",
            "application_name",
            "roles",
        ] {
            assert!(protected(s).is_none(), "{s}");
        }
    }
}
