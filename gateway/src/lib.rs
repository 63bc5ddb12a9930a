//! Warden: a gateway that stands in the data path between agents and production systems,
//! asks WebAssembly policy modules for a verdict on every command, and writes every verdict to
//! a tamper-evident audit log before anything is forwarded.
//!
//! Layout: [`policy`] runs the Wasm policies, [`audit`] is the redb audit store, [`identity`]
//! verifies JWTs into a [`identity::Principal`], [`command`] turns protocol requests into the
//! commands policies judge, [`config`] is `warden.toml`, [`cli`] is the `warden` command line.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod cases;
pub mod cli;
pub mod command;
pub mod config;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod protocol;
pub mod proxy;
pub mod recording;
pub mod session;
pub mod units;
pub mod whatif;
