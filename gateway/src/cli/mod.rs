//! The `warden` subcommands, one file each; `main.rs` only parses and dispatches.

pub mod admin_client;
pub mod approvals;
pub mod audit;
pub mod escape;
pub mod export;
pub mod live_audit;
pub mod policy;
pub mod reload;
pub mod replay;
pub mod report;
pub mod scaffold;
pub mod serve;
pub mod sessions;
pub mod token;
pub mod whatif;
