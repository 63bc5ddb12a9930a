//! The event model: what auditors read. Plain serde structs the gateway fills in; nothing here
//! depends on other gateway modules, so the audit trail's format changes only when this file does.
//!
//! Compatibility rule: an event once written is read back for as long as the database lives, so
//! fields are only ever added (with `#[serde(default)]`), never renamed or removed, and new kinds
//! are new [`EventKind`] variants. `verify` never decodes the kind, so an older `warden` still
//! verifies a chain holding kinds it does not know.

use crate::protocol::Protocol;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a caller submits: the store assigns the sequence number and the time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The session this event belongs to; `None` for gateway-wide events.
    pub session: Option<String>,
    pub kind: EventKind,
}

impl NewEvent {
    /// An event of one session.
    pub fn session(id: impl Into<String>, kind: EventKind) -> NewEvent {
        NewEvent {
            session: Some(id.into()),
            kind,
        }
    }

    /// A gateway-wide event (start-up, policy reload, ...).
    pub fn global(kind: EventKind) -> NewEvent {
        NewEvent {
            session: None,
            kind,
        }
    }
}

/// An event as recorded: these exact fields, serialised compactly in this order, are the bytes
/// the hash chain covers (see `chain.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// When the writer recorded it (UTC, microsecond precision). Wall-clock time, so it can step
    /// back with the clock; the order of events is `seq`.
    pub time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Flattened so a line reads `{"seq":7,"time":..,"session":..,"type":"command",...}`.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Tagged by `type` (snake_case) in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    SessionStart(SessionStart),
    SessionEnd(SessionEnd),
    Command(CommandEvent),
    ApprovalRequested(ApprovalRequested),
    ApprovalDecided(ApprovalDecided),
    Masked(MaskedEvent),
    /// A recording chunk as stored: its digest puts the recording under the chain.
    Recording(RecordingChunk),
    /// The head signed with the checkpoint key (also written to the checkpoint sinks).
    Checkpoint(CheckpointEvent),
    /// Retention removed everything up to a signed cut.
    Pruned(Pruned),
    /// Anything without a kind of its own yet: policy reloads, start-up.
    Note(Note),
}

impl EventKind {
    /// The `type` tag as written to JSON, for logs and filters.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::SessionStart(_) => "session_start",
            EventKind::SessionEnd(_) => "session_end",
            EventKind::Command(_) => "command",
            EventKind::ApprovalRequested(_) => "approval_requested",
            EventKind::ApprovalDecided(_) => "approval_decided",
            EventKind::Masked(_) => "masked",
            EventKind::Recording(_) => "recording",
            EventKind::Checkpoint(_) => "checkpoint",
            EventKind::Pruned(_) => "pruned",
            EventKind::Note(_) => "note",
        }
    }
}

/// Who was authenticated, as the token said. A copy of the identity module's principal so the
/// audit format does not move when that type does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuditPrincipal {
    pub subject: String,
    pub issuer: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The delegation chain, outermost first, ending with the party holding the connection.
    #[serde(default)]
    pub actors: Vec<String>,
}

/// A verdict, as policies and the combined chain give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditVerdict {
    Allow,
    Mask,
    Deny,
    RequireApproval,
}

impl AuditVerdict {
    /// As written to JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditVerdict::Allow => "allow",
            AuditVerdict::Mask => "mask",
            AuditVerdict::Deny => "deny",
            AuditVerdict::RequireApproval => "require-approval",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStart {
    pub protocol: Protocol,
    /// The target's name from warden.toml.
    pub target: String,
    /// The client's socket address as the listener saw it.
    pub client_addr: String,
    pub principal: AuditPrincipal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// Why it ended: `client closed`, `idle timeout`, `token expired`, an error, ...
    pub reason: String,
    pub counts: SessionCounts,
}

/// Totals over a session, kept by the session path and written once at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionCounts {
    pub commands: u64,
    pub allowed: u64,
    pub denied: u64,
    pub masked: u64,
    pub approvals: u64,
}

/// One command and the verdict on it, written before the command is forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEvent {
    /// The command as the client sent it, after masking by the caller: the store writes what
    /// it is given and must never be handed clear card data.
    pub command: String,
    /// Protocol-specific classification: `select`, `copy`, `exec`, `shell`, `GET`, `kube:delete`...
    pub kind: String,
    /// The combined verdict: the most restrictive of the chain.
    pub verdict: AuditVerdict,
    /// The winning policy's reason, if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every policy of the chain, in chain order, with its own verdict (shadow policies
    /// marked `shadow`).
    #[serde(default)]
    pub policies: Vec<PolicyDecision>,
    /// Set when a shadow policy (`mode = "shadow"`) would have changed the verdict had it been
    /// enforced: the verdict the client would then have got. Never what was enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_verdict: Option<AuditVerdict>,
    /// The shadow policy's reason for [`Self::shadow_verdict`], as `policy: reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_reason: Option<String>,
}

/// One policy's answer within a [`CommandEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecision {
    /// The module's name (its file name without `.wasm`).
    pub policy: String,
    /// Hex sha256 of the module that answered; `None` when no module was loaded under the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_sha256: Option<String>,
    pub verdict: AuditVerdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wall time of the call, in microseconds.
    pub latency_us: u64,
    /// Why the policy failed closed (trap, deadline, memory cap, missing, ...); `verdict` is
    /// then `deny` (for a shadow policy, only recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A shadow policy (`mode = "shadow"`): its verdict was recorded, not enforced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

/// The requester of an approval: who, and through which chain of agents.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Requester {
    pub subject: String,
    #[serde(default)]
    pub actors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    pub approval_id: String,
    /// The held command (already masked by the caller).
    pub command: String,
    /// The policy's reason for asking.
    pub reason: String,
    pub requester: Requester,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecided {
    pub approval_id: String,
    /// The approver's subject; `system:timeout` and the like when nobody decided.
    pub approver: String,
    pub approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which cells of a result a policy masked. Counts only: a value never reaches the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedEvent {
    /// The `seq` of the [`CommandEvent`] whose result this was.
    pub command_seq: u64,
    pub cells: Vec<MaskedCells>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedCells {
    /// Column name (or JSON pointer for HTTP bodies).
    pub column: String,
    /// The rule the policy named in its cell edits.
    pub rule: String,
    pub count: u64,
}

/// One chunk of a session's recording (the event's session): where it sits and what it hashes
/// to. `verify` recomputes the digest from the stored chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingChunk {
    /// The chunk's number within the session's recording, from 0.
    pub chunk: u64,
    /// Its length before compression.
    pub bytes: u64,
    /// Hex sha256 of those bytes.
    pub sha256: String,
}

/// A chain head signed with the gateway's Ed25519 checkpoint key: "event `seq` had chain hash
/// `hash` at `time`". The signed message is [`SignedHead::message`]; anyone with the public key
/// can check it without warden.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    pub seq: u64,
    /// Hex chain hash of event `seq`.
    pub hash: String,
    pub time: Timestamp,
    /// Hex of the 32-byte Ed25519 public key that signed.
    pub key: String,
    /// Hex of the 64-byte Ed25519 signature over [`SignedHead::message`].
    pub signature: String,
    /// A retention cut ("events up to `seq` were removed on purpose"), signed with a message of
    /// its own: an ordinary checkpoint of the same event does not authorise removing events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
}

impl SignedHead {
    /// The bytes signed: one line, versioned, fields in a fixed order.
    pub fn message(seq: u64, hash: &str, time: Timestamp, cut: bool) -> Vec<u8> {
        let what = if cut { "cut" } else { "checkpoint" };
        format!("warden-audit-{what}/1 seq={seq} hash={hash} time={time}").into_bytes()
    }
}

/// A checkpoint as the chain records it (the signed head is nested: its `seq` and `time` are
/// the head's, not the event's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEvent {
    pub head: SignedHead,
}

/// What one retention run removed, and the signed cut what remains chains from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Events older than this were due (the `[audit] retain` window).
    pub before: Timestamp,
    /// The last event removed: the chain now starts after it, from its hash.
    pub through: u64,
    /// Hex chain hash of event `through`.
    pub hash: String,
    /// `through` and `hash` signed with the checkpoint key, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<SignedHead>,
    pub events: u64,
    pub sessions: u64,
    pub approvals: u64,
    pub chunks: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// A short machine-readable topic: `startup`, `policy-reload`, `retention`, ...
    pub topic: String,
    pub message: String,
}

/// A UTC instant with microsecond precision. Written as RFC 3339 because auditors read it;
/// kept as Unix microseconds because code compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    pub fn from_unix_micros(micros: u64) -> Timestamp {
        Timestamp(micros)
    }

    /// Times before 1970 clamp to the epoch; after year ~586 000 they saturate.
    pub fn from_system_time(time: SystemTime) -> Timestamp {
        let micros = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Timestamp(micros)
    }

    pub fn unix_micros(self) -> u64 {
        self.0
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.0)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_micros(self.to_system_time())
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339(&text)
            .map(Timestamp::from_system_time)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trips_through_rfc3339() {
        let t = Timestamp::from_unix_micros(1_700_000_000_123_456);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2023-11-14T22:13:20.123456Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    fn signed() -> SignedHead {
        SignedHead {
            seq: 40,
            hash: "cd".repeat(32),
            time: Timestamp::from_unix_micros(8),
            key: "ee".repeat(32),
            signature: "ff".repeat(64),
            cut: false,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let kinds = vec![
            EventKind::SessionStart(SessionStart {
                protocol: Protocol::Postgres,
                target: "orders".into(),
                client_addr: "127.0.0.1:5000".into(),
                principal: AuditPrincipal {
                    subject: "alice".into(),
                    issuer: "idp".into(),
                    groups: vec!["dba".into()],
                    actors: vec!["alice".into(), "agent-1".into()],
                },
            }),
            EventKind::SessionEnd(SessionEnd {
                reason: "client closed".into(),
                counts: SessionCounts {
                    commands: 3,
                    allowed: 2,
                    denied: 1,
                    masked: 1,
                    approvals: 0,
                },
            }),
            EventKind::Command(CommandEvent {
                command: "select * from cards".into(),
                kind: "select".into(),
                verdict: AuditVerdict::RequireApproval,
                reason: Some("bulk read".into()),
                policies: vec![PolicyDecision {
                    policy: "pci".into(),
                    module_sha256: None,
                    verdict: AuditVerdict::Deny,
                    reason: None,
                    latency_us: 12,
                    error: Some("deadline".into()),
                    shadow: false,
                }],
                shadow_verdict: None,
                shadow_reason: None,
            }),
            EventKind::ApprovalRequested(ApprovalRequested {
                approval_id: "ap-1".into(),
                command: "drop table x".into(),
                reason: "ddl".into(),
                requester: Requester {
                    subject: "bob".into(),
                    actors: vec!["bob".into()],
                },
            }),
            EventKind::ApprovalDecided(ApprovalDecided {
                approval_id: "ap-1".into(),
                approver: "carol".into(),
                approved: false,
                reason: None,
            }),
            EventKind::Masked(MaskedEvent {
                command_seq: 9,
                cells: vec![MaskedCells {
                    column: "pan".into(),
                    rule: "pan".into(),
                    count: 40,
                }],
            }),
            EventKind::Note(Note {
                topic: "startup".into(),
                message: "hello".into(),
            }),
            EventKind::Recording(RecordingChunk {
                chunk: 2,
                bytes: 10,
                sha256: "ab".repeat(32),
            }),
            // A kind holding fields named like the event's own (`seq`, `time`) must nest them:
            // flattened, they would clash.
            EventKind::Checkpoint(CheckpointEvent { head: signed() }),
            EventKind::Pruned(Pruned {
                before: Timestamp::from_unix_micros(9),
                through: 40,
                hash: "cd".repeat(32),
                signed: Some(signed()),
                events: 40,
                sessions: 2,
                approvals: 1,
                chunks: 7,
            }),
        ];
        for kind in kinds {
            let event = Event {
                seq: 1,
                time: Timestamp::from_unix_micros(5),
                session: Some("s".into()),
                kind,
            };
            let json = serde_json::to_string(&event).unwrap();
            assert!(json.contains(&format!("\"type\":\"{}\"", event.kind.name())));
            assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
        }
    }

    #[test]
    fn verdicts_serialise_as_the_wit_names() {
        for v in [
            AuditVerdict::Allow,
            AuditVerdict::Mask,
            AuditVerdict::Deny,
            AuditVerdict::RequireApproval,
        ] {
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("\"{}\"", v.as_str())
            );
        }
    }
}
