//! The example configs load, and bad configs are refused with a message naming the problem.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use warden::config::Config;

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

#[test]
fn example_config_loads_with_its_chains() {
    let config = Config::load(&examples().join("warden.toml")).unwrap();
    assert_eq!(config.policy.deadline, std::time::Duration::from_millis(10));
    assert_eq!(config.policy.memory_limit.0, 16 << 20);
    assert!(config.policy.dir.ends_with("examples/policies"));
    let payments = &config.targets["payments"];
    let chain = payments.chain();
    let modules: Vec<_> = chain.iter().map(|r| r.module.as_str()).collect();
    assert_eq!(modules, ["sql-guard", "cardholder-approval", "pci-mask"]);
    // A TOML table reaches init as JSON.
    let json: serde_json::Value = serde_json::from_str(&chain[1].config).unwrap();
    assert_eq!(json["max_limit"], 100);
    assert_eq!(json["tables"][0], "cards");
    let guard: serde_json::Value = serde_json::from_str(&chain[0].config).unwrap();
    assert_eq!(guard["write_budget"]["per_table"], 1000);
}

#[test]
fn bad_configs_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let base = r#"
[audit]
path = "a.redb"
[identity]
issuer = "i"
audience = "a"
hs256_secret_file = "s"
"#;
    for (extra, expect) in [
        ("[targets.x]\nprotocol = \"gopher\"\n", "unknown variant"),
        (
            "[targets.x]\nprotocol = \"postgres\"\ncolour = 1\n",
            "unknown field",
        ),
        (
            "[policy]\nmemory_limit = \"16 parsecs\"\n",
            "unknown size unit",
        ),
        ("[policy]\ndeadline = \"soon\"\n", "deadline"),
        ("[targets.\"a b\"]\nprotocol = \"ssh\"\n", "without spaces"),
        (
            "[targets.x]\nprotocol = \"ssh\"\npolicies = [{ module = \"../evil\" }]\n",
            "invalid policy module name",
        ),
        (
            "[targets.x]\nprotocol = \"ssh\"\n",
            "an ssh target needs [targets.x.ssh]",
        ),
        (
            "[targets.x]\nprotocol = \"ssh\"\n[targets.x.ssh]\nhost = \"h\"\nuser = \"u\"\nkey_file = \"k\"\n",
            "never trusted on first use",
        ),
        (
            "[targets.x]\nprotocol = \"ssh\"\n[targets.x.ssh]\nhost = \"h\"\nuser = \"u\"\nknown_hosts = \"kh\"\n",
            "exactly one of key_file and password_file",
        ),
        (
            "[ssh]\nlisten = \"127.0.0.1:0\"\nhost_key = \"hk\"\n[[ssh.keys]]\nkey = \"ssh-ed25519 garbage\"\nsubject = \"bot\"\n",
            "key of `bot` is not an OpenSSH public key",
        ),
        // Nobody reaches a target that does not say who may.
        (
            "[targets.x]\nprotocol = \"ssh\"\n[targets.x.ssh]\nhost = \"h\"\nuser = \"u\"\nkey_file = \"k\"\nknown_hosts = \"kh\"\n",
            "say who may reach it",
        ),
        // The gateway never logs in as root unless the target says so.
        (
            "[targets.x]\nprotocol = \"ssh\"\nallow_groups = [\"ops\"]\n[targets.x.ssh]\nhost = \"h\"\nuser = \"root\"\nkey_file = \"k\"\nknown_hosts = \"kh\"\n",
            "log in to the host as root",
        ),
        (
            "[targets.x]\nprotocol = \"ssh\"\nallow_groups = [\"ops\"]\nmax_sessions = 0\n[targets.x.ssh]\nhost = \"h\"\nuser = \"u\"\nkey_file = \"k\"\nknown_hosts = \"kh\"\n",
            "session cap of 0",
        ),
        ("[connections]\nper_address = 0\n", "at least 1"),
    ] {
        let path = dir.path().join("w.toml");
        std::fs::write(&path, format!("{base}{extra}")).unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains(expect), "{extra}: {err}");
    }
}

#[test]
fn quickstart_config_loads() {
    let config = Config::load(&examples().join("quickstart.toml")).unwrap();
    let pg = config.postgres.as_ref().unwrap();
    assert!(
        pg.allow_plaintext_password,
        "the loopback demo logs in without TLS"
    );
    assert!(pg.listen.ip().is_loopback());
    let chain: Vec<_> = config.targets["payments"]
        .chain()
        .into_iter()
        .map(|r| r.module)
        .collect();
    assert_eq!(chain, ["sql-guard", "cardholder-approval", "pci-mask"]);
    assert!(config.targets["payments"].postgres.is_some());
}
