//! The `warden` subcommands, one file each; `main.rs` only parses and dispatches.

pub mod audit;
pub mod policy;
pub mod token;
