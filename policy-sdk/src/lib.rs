//! Write Warden policy modules in Rust.
//!
//! A policy is a WebAssembly component that the Warden gateway asks for a verdict on every
//! command (a SQL statement, a shell command, an HTTP request) and, when it answered
//! [`Verdict::Mask`], for the edits to make to each batch of result rows. This crate hides the
//! generated WIT bindings: you implement [`Policy`], whose methods default to "allow" and "no
//! edits", and register it with [`export_policy!`].
//!
//! # A complete policy
//!
//! ```no_run
//! use warden_policy::{export_policy, pan, Command, Policy, Session, Verdict, Column, Row, CellEdit};
//!
//! /// Denies every statement that touches a configured table, masks card numbers elsewhere.
//! struct NoSecrets {
//!     table: String,
//! }
//!
//! impl Policy for NoSecrets {
//!     // `config` is this policy's `config` from warden.toml.
//!     fn init(config: &str) -> Result<Self, String> {
//!         let table = config.trim();
//!         if table.is_empty() {
//!             return Err("config must name a table".into());
//!         }
//!         Ok(NoSecrets { table: table.to_lowercase() })
//!     }
//!
//!     fn check(&self, _session: &Session, command: &Command) -> Verdict {
//!         match command {
//!             Command::Sql(sql) if sql.tables.contains(&self.table) => {
//!                 Verdict::Deny(format!("table {} is off limits", self.table))
//!             }
//!             Command::Sql(_) => Verdict::Mask,
//!             _ => Verdict::Allow,
//!         }
//!     }
//!
//!     fn mask_rows(&self, _: &Session, _: &[Column], rows: &[Row]) -> Result<Vec<CellEdit>, String> {
//!         Ok(pan::mask_rows(rows, "pan"))
//!     }
//! }
//!
//! export_policy!(NoSecrets);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`), test it
//! offline with `warden policy test target/wasm32-wasip2/release/no_secrets.wasm cases.toml`,
//! and hot-load it by copying the `.wasm` into the gateway's policy directory.
//!
//! A policy runs with no filesystem, network, clock, environment or randomness, under a
//! deadline and a memory cap: keep it a pure function of its inputs.

pub mod pan;
pub mod sql;

#[doc(hidden)]
pub mod bindings {
    //! Generated bindings; not part of the public API.
    wit_bindgen::generate!({
        world: "policy",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "warden_policy::bindings",
    });
}

pub use bindings::warden::policy::types::{
    Budget, CellEdit, Column, ColumnUsage, ColumnUse, Command, CopyTarget, FileOp, Forward, Http,
    Kube, OverBudget, Principal, Protocol, Session, Shell, Sql, SqlCopy, SqlWrite, StdinKind,
    TableBudget, Verdict,
};

/// One result row: cells as text, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// Write a line to the gateway's log, tagged with this policy's name.
pub fn log(message: &str) {
    bindings::log(message);
}

/// A policy module. Implement this and register the type with [`export_policy!`].
///
/// The gateway creates one value per instance with [`Policy::init`] and keeps instances for
/// many calls, so a policy may precompute in `init` (parse its config, build tables).
pub trait Policy: Sized + Send + Sync + 'static {
    /// Build the policy from its config string (warden.toml's `config` for this policy; TOML
    /// tables arrive as JSON). An error rejects the module with that message.
    fn init(config: &str) -> Result<Self, String>;

    /// Decide one command. The default allows everything.
    fn check(&self, session: &Session, command: &Command) -> Verdict {
        let _ = (session, command);
        Verdict::Allow
    }

    /// Return the cells to change in one batch of result rows. Called only for commands this
    /// policy answered [`Verdict::Mask`]. The default changes nothing.
    fn mask_rows(
        &self,
        session: &Session,
        columns: &[Column],
        rows: &[Row],
    ) -> Result<Vec<CellEdit>, String> {
        let _ = (session, columns, rows);
        Ok(Vec::new())
    }
}

#[doc(hidden)]
pub mod __private {
    //! Glue used by [`export_policy!`](crate::export_policy); not part of the public API.
    use super::*;
    use std::sync::OnceLock;

    pub use crate::bindings::Guest;

    /// `init` for a policy type stored in `slot`.
    pub fn init<P: Policy>(slot: &OnceLock<P>, config: String) -> Result<(), String> {
        let policy = P::init(&config)?;
        slot.set(policy)
            .map_err(|_| "policy initialised twice".to_string())
    }

    /// `check`, failing closed when `init` has not run.
    pub fn check<P: Policy>(slot: &OnceLock<P>, session: Session, command: Command) -> Verdict {
        match slot.get() {
            Some(policy) => policy.check(&session, &command),
            None => Verdict::Deny("policy was not initialised".to_string()),
        }
    }

    /// `mask-rows`, failing closed when `init` has not run.
    pub fn mask_rows<P: Policy>(
        slot: &OnceLock<P>,
        session: Session,
        columns: Vec<Column>,
        rows: Vec<Row>,
    ) -> Result<Vec<CellEdit>, String> {
        match slot.get() {
            Some(policy) => policy.mask_rows(&session, &columns, &rows),
            None => Err("policy was not initialised".to_string()),
        }
    }
}

/// Register a [`Policy`] type as this component's exports. Use it once per crate.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        const _: () = {
            static POLICY: ::std::sync::OnceLock<$policy> = ::std::sync::OnceLock::new();

            struct WardenPolicyExports;

            impl $crate::__private::Guest for WardenPolicyExports {
                fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$policy>(&POLICY, config)
                }
                fn check(session: $crate::Session, command: $crate::Command) -> $crate::Verdict {
                    $crate::__private::check::<$policy>(&POLICY, session, command)
                }
                fn mask_rows(
                    session: $crate::Session,
                    columns: ::std::vec::Vec<$crate::Column>,
                    rows: ::std::vec::Vec<$crate::Row>,
                ) -> ::std::result::Result<::std::vec::Vec<$crate::CellEdit>, ::std::string::String> {
                    $crate::__private::mask_rows::<$policy>(&POLICY, session, columns, rows)
                }
            }

            $crate::bindings::__export_policy_world!(WardenPolicyExports with_types_in $crate::bindings);
        };
    };
}
