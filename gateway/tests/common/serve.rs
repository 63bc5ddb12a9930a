//! Running the real `warden serve` in tests: start it on a config, learn the ports it chose
//! (`:0`) from its stdout, mint tokens with the config's secret, stop it so its audit database
//! can be opened. The protocol fixtures (`gateway.rs`, `ssh.rs`) write the configs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use warden::identity::{IdentityConfig, MintRequest};

pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "warden";
/// The HS256 secret the fixtures write next to their configs as `secret`.
pub const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop\n";

/// Start `warden serve --config PATH`; returns the process and each listener's port by name
/// (`postgres`, `ssh`, `admin`), read from its `NAME listening on ADDR` lines.
pub fn start(config_path: &Path) -> (Child, HashMap<String, u16>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.args(["serve", "--config"]).arg(config_path);
    start_command(cmd)
}

/// [`start`] under a file-descriptor limit of `nofile` (soft and hard), as `ulimit -n` sets
/// it, with the gateway's log written to `log`.
pub fn start_limited(config_path: &Path, nofile: u64, log: &Path) -> (Child, HashMap<String, u16>) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n {nofile} && exec \"$0\" serve --config \"$1\" 2>\"$2\""
        ))
        .arg(env!("CARGO_BIN_EXE_warden"))
        .arg(config_path)
        .arg(log);
    start_command(cmd)
}

/// [`start`] with `--log-format json` at the gateway's default level (no `WARDEN_LOG`), its
/// log written to `log`.
pub fn start_json(config_path: &Path, log: &Path) -> (Child, HashMap<String, u16>) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("exec \"$0\" serve --config \"$1\" --log-format json 2>\"$2\"")
        .arg(env!("CARGO_BIN_EXE_warden"))
        .arg(config_path)
        .arg(log)
        .env_remove("WARDEN_LOG");
    spawn(cmd)
}

fn start_command(mut cmd: Command) -> (Child, HashMap<String, u16>) {
    cmd.env(
        "WARDEN_LOG",
        std::env::var("WARDEN_LOG").unwrap_or_else(|_| "warn".into()),
    );
    spawn(cmd)
}

fn spawn(mut cmd: Command) -> (Child, HashMap<String, u16>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut ports = HashMap::new();
    // The admin API is announced last.
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some((name, addr)) = line.split_once(" listening on ") {
            let port = addr.rsplit(':').next().unwrap().trim().parse().unwrap();
            ports.insert(name.to_string(), port);
            if name == "admin" {
                return (child, ports);
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("warden exited before listening");
}

/// Stop the gateway (SIGTERM, then wait) so its audit database can be opened.
pub fn stop(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        for _ in 0..100 {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The `[identity]` the fixtures configure, with the secret in `dir`.
pub fn identity(dir: &Path) -> IdentityConfig {
    IdentityConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway: Duration::from_secs(30),
        hs256_secret_file: Some(dir.join("secret")),
        jwks_file: None,
        max_ttl: None,
    }
}

/// A token as `req` asks, signed with the secret in `dir`.
pub fn mint(dir: &Path, req: &MintRequest) -> String {
    warden::identity::mint(&identity(dir), req).unwrap()
}

/// A five-minute token for `sub` acting through `actors`, with `groups`.
pub fn token(dir: &Path, sub: &str, actors: &[&str], groups: &[&str]) -> String {
    let mut req = MintRequest::new(sub);
    req.actors = actors.iter().map(|s| s.to_string()).collect();
    req.groups = groups.iter().map(|s| s.to_string()).collect();
    req.ttl = Duration::from_secs(300);
    warden::identity::mint(&identity(dir), &req).unwrap()
}
