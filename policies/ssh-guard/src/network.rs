//! Connections made from the host (`network` rule, on while the target allows no port
//! forwarding): a shell's `/dev/tcp` and `/dev/udp` redirections and the programs that open
//! a byte stream to another host (`nc`, `socat`, `ssh`, `telnet`, ...). Through one an agent
//! reaches whatever the host reaches, and can carry an SSH session to the host itself
//! (`ssh -o ProxyCommand='ssh gw nc 127.0.0.1 22'`), with no policy and no audit.
//! Downloads (`curl`, `wget`) are other rules' business: they fetch, they do not tunnel,
//! except `curl telnet://`.

use crate::expand::Arg;
use crate::findings::{Findings, Rule};
use crate::writes::is_remote;

/// Programs that open a two-way byte stream to another host (or tunnel one).
const CLIENTS: &[&str] = &[
    "nc",
    "ncat",
    "netcat",
    "nc.openbsd",
    "nc.traditional",
    "socat",
    "telnet",
    "ssh",
    "slogin",
    "sshpass",
    "autossh",
    "sftp",
    "sshuttle",
    "stunnel",
    "proxytunnel",
    "corkscrew",
    "chisel",
    "ngrok",
    "frpc",
    "iodine",
    "ptunnel",
    "openvpn",
    "wg-quick",
    "cryptcat",
    "pwncat",
];

/// A program run with `args`: refused when it connects to another host.
pub fn check_client(prog: &str, args: &[Arg], shown: &str, out: &mut Findings) {
    let connects = CLIENTS.contains(&prog)
        // `scp -t` / `scp -f` is the server side of a copy the client makes through the gateway.
        || (prog == "scp" && !args.iter().any(|a| matches!(a.text(), "-t" | "-f")))
        || (prog == "rsync" && args.iter().any(is_remote))
        || (prog == "curl" && args.iter().any(|a| a.dynamic || is_tunnel_url(a.text())))
        || (prog == "openssl" && args.first().is_some_and(|a| a.text() == "s_client"));
    if connects {
        out.deny(Rule::Network, || {
            format!("`{shown}` connects from the host to the network; with port forwarding off on this target, connections from it are refused too")
        });
    }
}

/// `curl` URLs that carry a two-way stream.
fn is_tunnel_url(url: &str) -> bool {
    let url = url.to_ascii_lowercase();
    [
        "telnet:", "dict:", "gopher:", "ldap:", "mqtt:", "smtp:", "rtsp:",
    ]
    .iter()
    .any(|s| url.starts_with(s))
}

/// A redirection to or from `target` (as expanded).
pub fn check_redirect(target: &str, shown: &str, out: &mut Findings) {
    if target.starts_with("/dev/tcp/") || target.starts_with("/dev/udp/") {
        out.deny(Rule::Network, || {
            format!("`{shown}` opens {target}, a connection from the host; with port forwarding off on this target, connections from it are refused too")
        });
    }
}
