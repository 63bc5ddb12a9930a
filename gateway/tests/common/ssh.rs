//! SSH end-to-end fixtures: a real OpenSSH `sshd` on a free loopback port in a temp dir (the
//! gateway's key authorised, `LogLevel VERBOSE` so every command it runs is logged, sftp on),
//! and a `warden serve` with only an SSH listener in front of it. Clients are the real `ssh`,
//! `scp` and `sftp`, given the token through `SSH_ASKPASS` or a key registered to a principal.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::pg::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub use super::serve::{AUDIENCE, ISSUER};

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is needed")
        .success();
    assert!(ok, "ssh-keygen failed");
}

/// A real sshd. The gateway logs in with `gw_key`; tests use the same key to compare with a
/// direct connection.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub gw_key: PathBuf,
    pub known_hosts: PathBuf,
    pub host_pub: String,
    pub log: PathBuf,
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// [`Sshd::start`] with more `sshd_config` lines.
    pub fn start_with(extra_config: &str) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd is needed (Debian: openssh-server)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_ed25519"));
        keygen(&d.join("gw_ed25519"));
        std::fs::copy(d.join("gw_ed25519.pub"), d.join("authorized_keys")).unwrap();
        let host_pub = std::fs::read_to_string(d.join("host_ed25519.pub")).unwrap();
        let host_pub: String = host_pub
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        std::fs::create_dir_all("/run/sshd").unwrap();
        for attempt in 0..5 {
            let port = free_port();
            std::fs::write(
                d.join("sshd_config"),
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
                     AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                     StrictModes no\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n\
                     Subsystem sftp internal-sftp\nAllowTcpForwarding yes\nMaxSessions 100\n\
                     MaxStartups 100:30:200\n{extra_config}\n",
                    d = d.display()
                ),
            )
            .unwrap();
            let log = d.join("sshd.log");
            let ok = Command::new(sshd)
                .arg("-f")
                .arg(d.join("sshd_config"))
                .arg("-E")
                .arg(&log)
                .status()
                .unwrap()
                .success();
            if ok && wait_port(port) {
                let known_hosts = d.join("known_hosts");
                std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}\n")).unwrap();
                return Sshd {
                    port,
                    gw_key: d.join("gw_ed25519"),
                    known_hosts,
                    host_pub,
                    log,
                    dir,
                };
            }
            eprintln!("sshd did not start on {port} (attempt {attempt})");
        }
        panic!("sshd would not start");
    }

    /// The sshd log (VERBOSE: one line per command it ran).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Run `ssh` straight to the host (the baseline).
    pub fn direct(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.args(["-p", &self.port.to_string(), "-i"])
            .arg(&self.gw_key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "LogLevel=ERROR", "root@127.0.0.1"])
            .args(args);
        run(cmd, stdin)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("sshd.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn wait_port(port: u16) -> bool {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    false
}

pub fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    child.wait_with_output().unwrap()
}

/// `warden serve` with an SSH listener; `web-1` (and any extra targets) lead to `sshd`.
pub struct SshGateway {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    child: Option<Child>,
    pub config_path: PathBuf,
    /// A client key registered to principal `deploy-bot` (group `ops`).
    pub client_key: PathBuf,
    /// The PostgreSQL listener's port, when `extra` configured one.
    pub pg_port: Option<u16>,
}

/// The `[targets.NAME]` block for an ssh target on `sshd` with `chain`.
pub fn ssh_target(name: &str, sshd: &Sshd, chain: &str, pin: &str) -> String {
    format!(
        r#"
[targets.{name}]
protocol = "ssh"
policies = [{chain}]
allow_subjects = ["*"]
# The test sshd lets only root in; the refusal of a root upstream is tested in front_door.rs.
allow_privileged_upstream = true
[targets.{name}.ssh]
host = "127.0.0.1"
port = {port}
user = "root"
key_file = "{key}"
{pin}
"#,
        port = sshd.port,
        key = sshd.gw_key.display(),
    )
}

impl SshGateway {
    /// `chain` is web-1's policy list; `policies` the modules to install; `extra` more TOML.
    pub fn start(sshd: &Sshd, chain: &str, policies: &[&str], extra: &str) -> SshGateway {
        SshGateway::start_with(sshd, chain, policies, extra, "")
    }

    /// [`SshGateway::start`] with more `[identity]` lines (`leeway = "1s"`).
    pub fn start_with(
        sshd: &Sshd,
        chain: &str,
        policies: &[&str],
        extra: &str,
        identity: &str,
    ) -> SshGateway {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let policy_dir = d.join("policies");
        std::fs::create_dir_all(&policy_dir).unwrap();
        for p in policies {
            super::install(p, &policy_dir, &format!("{p}.wasm"));
        }
        std::fs::write(
            d.join("secret"),
            "test-secret-0123456789-abcdefghijklmnop\n",
        )
        .unwrap();
        keygen(&d.join("client_ed25519"));
        let client_pub = std::fs::read_to_string(d.join("client_ed25519.pub")).unwrap();
        let pin = format!("known_hosts = \"{}\"", sshd.known_hosts.display());
        let mut config = format!(
            r#"
[policy]
dir = "policies"
reload_interval = "100ms"
deadline = "250ms"
[audit]
path = "audit.redb"
[identity]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
hs256_secret_file = "secret"
{identity}
[ssh]
listen = "127.0.0.1:0"
host_key = "host_key"
[[ssh.keys]]
key = "{client}"
subject = "deploy-bot"
groups = ["ops"]
[admin]
listen = "127.0.0.1:0"
approver_groups = ["approvers"]
approval_timeout = "30s"
"#,
            client = client_pub.trim(),
        );
        config.push_str(&ssh_target("web-1", sshd, chain, &pin));
        config.push_str(extra);
        let config_path = d.join("warden.toml");
        std::fs::write(&config_path, config).unwrap();
        let (child, ports) = super::serve::start(&config_path);
        let (port, admin_port) = (ports["ssh"], ports["admin"]);
        SshGateway {
            pg_port: ports.get("postgres").copied(),
            client_key: d.join("client_ed25519"),
            dir,
            port,
            admin_port,
            child: Some(child),
            config_path,
        }
    }

    /// A token for `sub` acting through `actors`, with `groups`.
    pub fn token(&self, sub: &str, actors: &[&str], groups: &[&str]) -> String {
        super::serve::token(self.dir.path(), sub, actors, groups)
    }

    /// The directory holding the config, secret and audit database.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Common client options: the gateway's host key is not pinned by the tests.
    fn opts(&self, cmd: &mut Command) {
        cmd.args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR"]);
    }

    /// `prog` (ssh, scp, sftp) with the token answered through SSH_ASKPASS.
    pub fn with_token(&self, prog: &str, token: &str) -> Command {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let token_file = self.dir.path().join(format!("token-{n}"));
        std::fs::write(&token_file, token).unwrap();
        let askpass = self.dir.path().join(format!("askpass-{n}.sh"));
        std::fs::write(
            &askpass,
            format!("#!/bin/sh\ncat '{}'\n", token_file.display()),
        )
        .unwrap();
        std::fs::set_permissions(
            &askpass,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let mut cmd = Command::new("setsid");
        cmd.arg("-w")
            .arg(prog)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env_remove("DISPLAY");
        self.opts(&mut cmd);
        cmd.args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password",
        ]);
        cmd
    }

    /// `prog` logging in with the registered client key (no token; BatchMode works).
    pub fn with_key(&self, prog: &str) -> Command {
        let mut cmd = Command::new(prog);
        self.opts(&mut cmd);
        cmd.arg("-i").arg(&self.client_key).args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
        ]);
        cmd
    }

    /// `ssh -p PORT [args] TARGET@127.0.0.1 REMOTE...` with a token for alice via agent-7.
    pub fn ssh(
        &self,
        target: &str,
        ssh_args: &[&str],
        remote: &[&str],
        stdin: Option<&[u8]>,
    ) -> Output {
        let token = self.token("alice", &["agent-7"], &[]);
        self.ssh_as(&token, target, ssh_args, remote, stdin)
    }

    pub fn ssh_as(
        &self,
        token: &str,
        target: &str,
        ssh_args: &[&str],
        remote: &[&str],
        stdin: Option<&[u8]>,
    ) -> Output {
        let mut cmd = self.with_token("ssh", token);
        cmd.args(["-p", &self.port.to_string()])
            .args(ssh_args)
            .arg(format!("{target}@127.0.0.1"))
            .args(remote);
        run(cmd, stdin)
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.redb")
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// Stop the gateway (SIGTERM, then wait) so its audit database can be opened.
    pub fn stop(&mut self) {
        super::serve::stop(&mut self.child);
    }

    /// Run a `warden` subcommand (sessions, replay, audit, approvals) and return its output.
    pub fn warden(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.args(args);
        run(cmd, None)
    }
}

impl Drop for SshGateway {
    fn drop(&mut self) {
        self.stop();
    }
}
