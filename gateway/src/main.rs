//! The `warden` command line.
fn main() {}
