//! `warden.toml`.
