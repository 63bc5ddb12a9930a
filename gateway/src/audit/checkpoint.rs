//! Signed checkpoints: the chain's head, signed with an Ed25519 key kept outside the audit
//! database, recorded in the chain and written to sinks outside it (a file on another path, and
//! syslog for a SIEM). Someone who can rewrite the database can rehash every event after the
//! one they change, but cannot sign a new head, nor reach the copies the sinks hold: so
//! `warden audit verify --checkpoints FILE --pubkey KEY` shows there was no rewrite since the
//! last checkpoint (see [`check_checkpoints`]).
//!
//! Keys are PEM files as OpenSSL writes them (`openssl genpkey -algorithm ed25519`, and
//! `openssl pkey -pubout` for the public half), or made by `warden audit keygen`.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde::Deserialize;

use super::AuditError;
use super::event::{SignedHead, Timestamp};

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the key's 32 bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// `[audit.checkpoints]` in warden.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The Ed25519 private key (PKCS#8 PEM), readable by the gateway's user only.
    pub key: PathBuf,
    /// Checkpoints are appended here as JSON lines; put it on another disk or host mount than
    /// the database, where the gateway's writers of the database cannot rewrite it.
    pub file: PathBuf,
    /// How often to sign the head (and always at shutdown).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: std::time::Duration,
    /// Also send each checkpoint to syslog: a unix datagram socket path (`/dev/log`) or
    /// `udp://HOST:PORT`.
    #[serde(default)]
    pub syslog: Option<String>,
}

fn default_interval() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

/// The signing key and where its signatures go.
pub struct Checkpointer {
    key: Ed25519KeyPair,
    public_hex: String,
    file: PathBuf,
    syslog: Option<String>,
    pub(crate) interval: std::time::Duration,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("key", &self.public_hex)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// Load the key (refusing one others can read, as ssh does) and check the file can be
    /// written.
    pub fn from_config(config: &CheckpointConfig) -> Result<Checkpointer, AuditError> {
        let key = load_private_key(&config.key)?;
        let public_hex = hex::encode(key.public_key().as_ref());
        open_sink(&config.file)?;
        Ok(Checkpointer {
            key,
            public_hex,
            file: config.file.clone(),
            syslog: config.syslog.clone(),
            interval: config.interval,
        })
    }

    /// The key's public half, hex.
    pub fn public_hex(&self) -> &str {
        &self.public_hex
    }

    /// The checkpoint file's lines.
    pub fn lines(&self) -> Result<Vec<CheckpointLine>, AuditError> {
        match std::fs::metadata(&self.file) {
            Ok(_) => read_checkpoints(&self.file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(AuditError::Checkpoint(format!(
                "checkpoint file {}: {e}",
                self.file.display()
            ))),
        }
    }

    /// Sign "event `seq` had chain hash `hash`".
    pub fn sign(&self, seq: u64, hash: &[u8; 32]) -> SignedHead {
        self.sign_as(seq, hash, false)
    }

    /// Sign "events up to `seq` (chain hash `hash`) were removed by retention".
    pub fn sign_cut(&self, seq: u64, hash: &[u8; 32]) -> SignedHead {
        self.sign_as(seq, hash, true)
    }

    fn sign_as(&self, seq: u64, hash: &[u8; 32], cut: bool) -> SignedHead {
        let hash = hex::encode(hash);
        let time = Timestamp::now();
        let signature = self.key.sign(&SignedHead::message(seq, &hash, time, cut));
        SignedHead {
            seq,
            hash,
            time,
            key: self.public_hex.clone(),
            signature: hex::encode(signature.as_ref()),
            cut,
        }
    }

    /// Write a checkpoint to every sink: the file durably (fsync), syslog best-effort. The file
    /// is the one `verify --checkpoints` reads, so its failure is an error.
    pub fn publish(&self, head: &SignedHead) -> Result<(), AuditError> {
        let line = serde_json::to_string(head)?;
        let mut file = open_sink(&self.file)?;
        file.write_all(format!("{line}\n").as_bytes())?;
        file.sync_data()?;
        if let Some(target) = &self.syslog
            && let Err(err) = send_syslog(target, &line)
        {
            tracing::warn!(syslog = %target, "checkpoint not sent to syslog: {err}");
        }
        Ok(())
    }
}

/// Append-only, created 0600; an existing file others could read or write is narrowed to 0600.
fn open_sink(path: &Path) -> Result<std::fs::File, AuditError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |e: std::io::Error| {
        AuditError::Checkpoint(format!("checkpoint file {}: {e}", path.display()))
    };
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    let mode = file.metadata().map_err(fail)?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(fail)?;
    }
    Ok(file)
}

/// RFC 5424, facility authpriv (10), severity notice (5): `<85>1 TIME HOST warden - checkpoint - MSG`.
fn send_syslog(target: &str, message: &str) -> std::io::Result<()> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "-".into());
    let line = format!(
        "<85>1 {} {host} warden {} checkpoint - {message}",
        Timestamp::now(),
        std::process::id()
    );
    match target.strip_prefix("udp://") {
        Some(addr) => {
            let socket = std::net::UdpSocket::bind(("0.0.0.0", 0))?;
            socket.send_to(line.as_bytes(), addr)?;
        }
        None => {
            let socket = std::os::unix::net::UnixDatagram::unbound()?;
            socket.send_to(line.as_bytes(), target)?;
        }
    }
    Ok(())
}

fn load_private_key(path: &Path) -> Result<Ed25519KeyPair, AuditError> {
    use std::os::unix::fs::MetadataExt;
    let fail = |what: String| AuditError::Checkpoint(format!("key {}: {what}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(fail(format!(
            "mode {:o} lets others read the signing key (chmod 600 it)",
            meta.mode() & 0o777
        )));
    }
    let der = PrivatePkcs8KeyDer::from_pem_file(path)
        .map_err(|e| fail(format!("not a PKCS#8 PEM private key: {e}")))?;
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
        .map_err(|e| fail(format!("not an Ed25519 key: {e}")))
}

/// A public key: a PEM `PUBLIC KEY` file (as `openssl pkey -pubout` writes), or its 32 bytes
/// in hex as checkpoints carry them.
pub fn load_public_key(path: &Path) -> Result<[u8; 32], AuditError> {
    let fail =
        |what: String| AuditError::Checkpoint(format!("public key {}: {what}", path.display()));
    let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if let Some(key) = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| hex::decode(t.trim()).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
    {
        return Ok(key);
    }
    let der = SubjectPublicKeyInfoDer::from_pem_slice(&text)
        .map_err(|e| fail(format!("not a PEM public key: {e}")))?;
    der.strip_prefix(SPKI_PREFIX.as_slice())
        .and_then(|key| <[u8; 32]>::try_from(key).ok())
        .ok_or_else(|| fail("not an Ed25519 public key".into()))
}

/// Does `head` carry a valid signature by `public`?
pub fn signature_holds(head: &SignedHead, public: &[u8; 32]) -> bool {
    let Ok(signature) = hex::decode(&head.signature) else {
        return false;
    };
    head.key == hex::encode(public)
        && UnparsedPublicKey::new(&ED25519, public)
            .verify(
                &SignedHead::message(head.seq, &head.hash, head.time, head.cut),
                &signature,
            )
            .is_ok()
}

/// Make a key pair: the private key PKCS#8 PEM (0600), the public key SPKI PEM. Refuses to
/// overwrite either.
pub fn generate_key(private: &Path, public: &Path) -> Result<String, AuditError> {
    use std::os::unix::fs::OpenOptionsExt;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| AuditError::Checkpoint("the system random source failed".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| AuditError::Checkpoint(e.to_string()))?;
    let mut spki = SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    let write = |path: &Path, mode: u32, label: &str, der: &[u8]| -> Result<(), AuditError> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|e| AuditError::Checkpoint(format!("{}: {e}", path.display())))?;
        file.write_all(pem(label, der).as_bytes())?;
        file.sync_all()?;
        Ok(())
    };
    write(private, 0o600, "PRIVATE KEY", pkcs8.as_ref())?;
    write(public, 0o644, "PUBLIC KEY", &spki)?;
    Ok(hex::encode(pair.public_key().as_ref()))
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// One checkpoint of a sink file, read back.
#[derive(Debug, Clone)]
pub struct CheckpointLine {
    /// Line number in the file, from 1.
    pub line: usize,
    pub head: Result<SignedHead, String>,
}

/// Read a checkpoint file: one JSON [`SignedHead`] per line (blank lines skipped).
pub fn read_checkpoints(path: &Path) -> Result<Vec<CheckpointLine>, AuditError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AuditError::Checkpoint(format!("checkpoint file {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| CheckpointLine {
            line: i + 1,
            head: serde_json::from_str(l).map_err(|e| e.to_string()),
        })
        .collect())
}

/// What checking the chain against signed checkpoints found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointReport {
    /// Checkpoints whose signature held and whose head matches the chain.
    pub matched: u64,
    /// Signed checkpoints before the retention cut (their events are gone; not comparable).
    pub before_cut: u64,
    /// Checkpoint events inside the chain whose signature held.
    pub in_chain: u64,
    /// The newest checkpoint that matched.
    pub last: Option<SignedHead>,
    /// The first failure, in words; `None` when everything held.
    pub problem: Option<String>,
}

/// Check checkpoints against a chain that verified on its own: each must be signed by
/// `public`, and the chain's hash at its `seq` must be the one it signed. `hash_at(seq)` gives
/// the chain's (verified) hash of an event, `None` when the chain has no such event;
/// `base` is the retention cut (0: none) and its hash.
pub fn check_checkpoints(
    lines: &[CheckpointLine],
    in_chain: &[SignedHead],
    public: &[u8; 32],
    base: (u64, [u8; 32]),
    hash_at: &mut dyn FnMut(u64) -> Result<Option<[u8; 32]>, AuditError>,
) -> Result<CheckpointReport, AuditError> {
    let mut report = CheckpointReport::default();
    // A chain that starts after a cut: the cut must be one the key signed (retention publishes
    // it), or the events before it were removed by someone else.
    let (base_seq, base_hash) = base;
    if base_seq > 0 {
        // Only a cut signature authorises it: a checkpoint of the same event does not.
        let signed_cut = lines.iter().any(|l| {
            l.head.as_ref().is_ok_and(|h| {
                h.cut
                    && h.seq == base_seq
                    && h.hash == hex::encode(base_hash)
                    && signature_holds(h, public)
            })
        });
        if !signed_cut {
            report.problem = Some(format!(
                "the chain starts after event {base_seq}, a cut no checkpoint in the file signs: \
                 events before it were removed outside retention"
            ));
            return Ok(report);
        }
    }
    for signed in in_chain {
        if !signature_holds(signed, public) {
            report.problem = Some(format!(
                "the checkpoint event for seq {} in the chain is not signed by this key",
                signed.seq
            ));
            return Ok(report);
        }
        // The gateway appends every checkpoint it chains to the file: one the file lacks was
        // cut from it (or, for the newest only, the gateway stopped between the two writes).
        let in_file = lines
            .iter()
            .any(|l| l.head.as_ref().is_ok_and(|h| h == signed));
        if !in_file {
            report.problem = Some(format!(
                "the chain holds a signed checkpoint of event {} ({}) that the checkpoint file \
                 does not: lines were removed from the file (or the gateway stopped between \
                 signing and writing it)",
                signed.seq, signed.time
            ));
            return Ok(report);
        }
        report.in_chain += 1;
    }
    for line in lines {
        let head = match &line.head {
            Ok(head) => head,
            Err(e) => {
                report.problem = Some(format!("checkpoint line {}: unreadable: {e}", line.line));
                return Ok(report);
            }
        };
        if !signature_holds(head, public) {
            report.problem = Some(format!(
                "checkpoint line {} (seq {}): the signature does not hold for this public key",
                line.line, head.seq
            ));
            return Ok(report);
        }
        let found = if head.seq < base_seq {
            report.before_cut += 1;
            continue;
        } else if head.seq == base_seq && base_seq > 0 {
            Some(base_hash)
        } else {
            hash_at(head.seq)?
        };
        match found {
            None => {
                report.problem = Some(format!(
                    "checkpoint line {} signed event {} at {}, which the chain no longer holds: \
                     events were removed since",
                    line.line, head.seq, head.time
                ));
                return Ok(report);
            }
            Some(hash) if hex::encode(hash) != head.hash => {
                report.problem = Some(format!(
                    "checkpoint line {} signed event {} with hash {} at {}; the chain's event {} \
                     hashes to {}: the chain was rewritten since",
                    line.line,
                    head.seq,
                    head.hash,
                    head.time,
                    head.seq,
                    hex::encode(hash)
                ));
                return Ok(report);
            }
            Some(_) => {
                report.matched += 1;
                if report.last.as_ref().is_none_or(|l| l.seq <= head.seq) {
                    report.last = Some(head.clone());
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn keys(dir: &Path) -> (Checkpointer, [u8; 32]) {
        let private = dir.join("key.pem");
        let public = dir.join("key.pub.pem");
        generate_key(&private, &public).unwrap();
        let checkpointer = Checkpointer::from_config(&CheckpointConfig {
            key: private,
            file: dir.join("checkpoints.jsonl"),
            interval: default_interval(),
            syslog: None,
        })
        .unwrap();
        (checkpointer, load_public_key(&public).unwrap())
    }

    #[test]
    fn a_signed_head_verifies_and_any_change_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, public) = keys(dir.path());
        let head = signer.sign(7, &[3; 32]);
        assert!(signature_holds(&head, &public));
        let mut moved = head.clone();
        moved.seq = 8;
        assert!(!signature_holds(&moved, &public));
        let mut rehashed = head.clone();
        rehashed.hash = hex::encode([4; 32]);
        assert!(!signature_holds(&rehashed, &public));
        let other = tempfile::tempdir().unwrap();
        let (_, other_public) = keys(other.path());
        assert!(!signature_holds(&head, &other_public));
    }

    #[test]
    fn keys_are_private_and_a_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = keys(dir.path());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("key.pem")), 0o600);
        signer.publish(&signer.sign(1, &[0; 32])).unwrap();
        assert_eq!(mode(&dir.path().join("checkpoints.jsonl")), 0o600);
        std::fs::set_permissions(
            dir.path().join("key.pem"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = load_private_key(&dir.path().join("key.pem")).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn a_checkpoint_file_others_could_read_is_narrowed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("checkpoints.jsonl");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (signer, _) = keys(dir.path());
        signer.publish(&signer.sign(1, &[0; 32])).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_cut_and_a_checkpoint_sign_different_statements() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, public) = keys(dir.path());
        let cut = signer.sign_cut(5, &[1; 32]);
        assert!(signature_holds(&cut, &public));
        let mut posing = cut.clone();
        posing.cut = false;
        assert!(!signature_holds(&posing, &public));
        let mut promoted = signer.sign(5, &[1; 32]);
        promoted.cut = true;
        assert!(!signature_holds(&promoted, &public));
    }

    #[test]
    fn the_public_key_reads_as_pem_or_hex() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, public) = keys(dir.path());
        assert_eq!(hex::encode(public), signer.public_hex);
        let hex_file = dir.path().join("key.hex");
        std::fs::write(&hex_file, format!("{}\n", signer.public_hex)).unwrap();
        assert_eq!(load_public_key(&hex_file).unwrap(), public);
        std::fs::write(&hex_file, "not a key").unwrap();
        assert!(load_public_key(&hex_file).is_err());
    }

    #[test]
    fn syslog_gets_the_checkpoint_line() {
        let dir = tempfile::tempdir().unwrap();
        let socket_path = dir.path().join("log.sock");
        let listener = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
        let (mut signer, _) = keys(dir.path());
        signer.syslog = Some(socket_path.display().to_string());
        let head = signer.sign(3, &[9; 32]);
        signer.publish(&head).unwrap();
        let mut buf = [0u8; 2048];
        let n = listener.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("<85>1 "), "{text}");
        assert!(text.contains(&head.signature), "{text}");
    }
}
