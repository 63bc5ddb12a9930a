//! Approvals end to end: a real audit store in a temp dir, the real admin API on a free
//! loopback port, a real HTTP client, tokens minted with the HS256 development secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use warden::admin::{self, AdminState};
use warden::approvals::{ApprovalOutcome, ApprovalRequest, Approvals, PendingApproval};
use warden::audit::{AuditStore, EventKind};
use warden::cli::approvals::{ApprovalsArgs, ApprovalsCmd, run_with};
use warden::config::AdminConfig;
use warden::identity::{IdentityConfig, MintRequest, Verifier, mint};

const SECRET: &str = "approvals-test-secret-of-more-than-32-bytes";

struct Harness {
    dir: tempfile::TempDir,
    identity: IdentityConfig,
    verifier: Arc<Verifier>,
    audit: AuditStore,
    approvals: Approvals,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), admin::AdminError>>>,
}

async fn harness(timeout: Duration) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let identity = IdentityConfig {
        issuer: "https://idp.test".into(),
        audience: "warden".into(),
        leeway: Duration::from_secs(30),
        hs256_secret_file: Some(secret),
        jwks_file: None,
        max_ttl: None,
    };
    let verifier = Arc::new(Verifier::from_config(&identity).unwrap());
    let audit = AuditStore::open(dir.path().join("audit.redb")).unwrap();
    let listener = admin::bind("127.0.0.1:0".parse().unwrap(), false)
        .await
        .unwrap();
    let config = AdminConfig {
        listen: listener.local_addr().unwrap(),
        tls_cert: None,
        tls_key: None,
        approver_groups: vec!["approvers".into()],
        auditor_groups: vec!["auditors".into()],
        metrics_groups: None,
        approval_timeout: timeout,
    };
    let approvals = Approvals::new(audit.clone(), &config);
    let state = AdminState {
        approvals: approvals.clone(),
        verifier: verifier.clone(),
        audit: audit.clone(),
        auditors: Arc::new(config.auditor_groups.clone()),
        metrics_groups: None,
        gateway: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(admin::serve(listener, state, None, async {
        let _ = stopped.await;
    }));
    Harness {
        dir,
        identity,
        verifier,
        audit,
        approvals,
        base: format!("http://{}", config.listen),
        stop: Some(stop),
        server: Some(server),
    }
}

impl Harness {
    fn token(&self, subject: &str, groups: &[&str], actors: &[&str]) -> String {
        let request = MintRequest {
            subject: subject.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            actors: actors.iter().map(|a| a.to_string()).collect(),
            ttl: Duration::from_secs(300),
            targets: Vec::new(),
        };
        mint(&self.identity, &request).unwrap()
    }

    /// Hold a command for `alice`, worked on by `agent-7`.
    async fn hold(&self, command: &str) -> PendingApproval {
        let requester = self
            .verifier
            .verify(&self.token("alice", &["dba"], &["agent-7"]))
            .unwrap();
        self.approvals
            .request(ApprovalRequest {
                session_id: "sess-1".into(),
                target: "orders".into(),
                requester,
                command: command.into(),
                reason: "cardholder table".into(),
            })
            .await
            .unwrap()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = Full::new(Bytes::from(body.unwrap_or_default()));
        let response = client.request(request.body(body).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn decide(&self, token: &str, id: &str, action: &str, reason: &str) -> (u16, Value) {
        let body = json!({ "reason": reason }).to_string();
        let path = format!("/v1/approvals/{id}/{action}");
        self.call(Method::POST, &path, Some(token), Some(body))
            .await
    }

    fn approver(&self) -> String {
        self.token("carol", &["approvers"], &[])
    }

    fn auditor(&self) -> String {
        self.token("dora", &["auditors"], &[])
    }

    /// The approval events of `id`, in chain order.
    fn approval_events(&self, id: &str) -> Vec<(Option<String>, EventKind)> {
        self.audit
            .events(..)
            .unwrap()
            .into_iter()
            .filter(|e| match &e.event.kind {
                EventKind::ApprovalRequested(r) => r.approval_id == id,
                EventKind::ApprovalDecided(d) => d.approval_id == id,
                EventKind::Note(n) => n.message.contains(id),
                _ => false,
            })
            .map(|e| (e.event.session, e.event.kind))
            .collect()
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_wakes_the_waiter_and_is_audited() {
    let h = harness(Duration::from_secs(60)).await;
    let pending = h.hold("delete from cards where id = 7").await;
    let id = pending.id.clone();
    assert!(id.starts_with("apr-") && id.len() == 20, "{id}");
    let waiter = tokio::spawn(pending.wait());

    let (status, list) = h
        .call(Method::GET, "/v1/approvals", Some(&h.approver()), None)
        .await;
    assert_eq!(status, 200, "{list}");
    let listed = &list["approvals"][0];
    assert_eq!(listed["id"], id);
    assert_eq!(listed["target"], "orders");
    assert_eq!(listed["session_id"], "sess-1");
    assert_eq!(listed["requester"]["actors"], json!(["alice", "agent-7"]));
    assert_eq!(listed["command"], "delete from cards where id = 7");

    let (status, body) = h
        .decide(&h.approver(), &id, "approve", " ticket OPS-12 ")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "approved");
    let outcome = waiter.await.unwrap();
    assert_eq!(
        outcome,
        ApprovalOutcome::Approved {
            approver: "carol".into(),
            reason: "ticket OPS-12".into()
        }
    );
    assert!(h.approvals.pending().is_empty());

    let events = h.approval_events(&id);
    assert_eq!(events.len(), 2, "{events:?}");
    let (session, EventKind::ApprovalRequested(requested)) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(session.as_deref(), Some("sess-1"));
    assert_eq!(requested.requester.actors, ["alice", "agent-7"]);
    assert_eq!(requested.reason, "cardholder table");
    let (_, EventKind::ApprovalDecided(decided)) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(decided.approver, "carol");
    assert!(decided.approved);
    assert_eq!(decided.reason.as_deref(), Some("ticket OPS-12"));
    let record = h.audit.approval(&id).unwrap().unwrap();
    assert_eq!(record.decision.unwrap().approver, "carol");

    // Reading the trail is for auditors, not approvers.
    let (status, _) = h
        .call(Method::GET, "/v1/audit/verify", Some(&h.approver()), None)
        .await;
    assert_eq!(status, 403);
    let (status, report) = h
        .call(Method::GET, "/v1/audit/verify", Some(&h.auditor()), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events"], 2);
    assert_eq!(report["problem"], Value::Null);

    // Decided once: a second decision finds nothing.
    let (status, _) = h.decide(&h.approver(), &id, "deny", "again").await;
    assert_eq!(status, 404);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_and_timeout() {
    let h = harness(Duration::from_secs(60)).await;
    let pending = h.hold("drop table cards").await;
    let id = pending.id.clone();
    let waiter = tokio::spawn(pending.wait());
    let (status, body) = h.decide(&h.approver(), &id, "deny", "not today").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "denied");
    assert_eq!(
        waiter.await.unwrap(),
        ApprovalOutcome::Denied {
            approver: "carol".into(),
            reason: "not today".into()
        }
    );

    h.shutdown().await;

    let h = harness(Duration::from_millis(300)).await;
    let pending = h.hold("truncate cards").await;
    let id = pending.id.clone();
    assert_eq!(pending.wait().await, ApprovalOutcome::TimedOut);
    let (status, _) = h.decide(&h.approver(), &id, "approve", "too late").await;
    assert_eq!(status, 404);
    let events = h.approval_events(&id);
    let (_, EventKind::ApprovalDecided(decided)) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(decided.approver, "system:timeout");
    assert!(!decided.approved);
    assert!(h.audit.verify().unwrap().is_ok());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_and_non_approvers_are_refused() {
    let h = harness(Duration::from_secs(60)).await;
    let pending = h.hold("update cards set pan = null").await;
    let id = pending.id.clone();
    let refusals = [
        // The requester itself, even in the approver group.
        (h.token("alice", &["approvers"], &[]), "own request"),
        // The agent that holds the requester's connection, with its own token.
        (
            h.token("agent-7", &["approvers"], &[]),
            "requester's delegation chain",
        ),
        // An agent acting for the requester.
        (
            h.token("alice", &["approvers"], &["agent-9"]),
            "own request",
        ),
        // The same agent, now acting for someone else.
        (
            h.token("carol", &["approvers"], &["agent-7"]),
            "both the requester's and the approver's",
        ),
        // The requester acting through someone else's token.
        (
            h.token("bob", &["approvers"], &["alice"]),
            "in the approver's delegation chain",
        ),
        // An approver deciding through an agent.
        (h.token("carol", &["approvers"], &["bot"]), "own token"),
        // Not an approver.
        (
            h.token("dave", &["dba"], &[]),
            "none of the approver groups",
        ),
    ];
    for (token, expected) in &refusals {
        let (status, body) = h.decide(token, &id, "approve", "looks fine").await;
        assert_eq!(status, 403, "{body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(expected), "{message}");
    }
    let (status, _) = h
        .call(
            Method::GET,
            "/v1/approvals",
            Some(&h.token("dave", &[], &[])),
            None,
        )
        .await;
    assert_eq!(status, 403);

    // Still pending, and the attempts by parties are on record.
    assert_eq!(h.approvals.pending().len(), 1);
    let notes = h
        .approval_events(&id)
        .into_iter()
        .filter(|(_, kind)| matches!(kind, EventKind::Note(n) if n.topic == "approval-refused"))
        .count();
    assert_eq!(notes, 6);

    let (status, _) = h.decide(&h.approver(), &id, "approve", "fine").await;
    assert_eq!(status, 200);
    assert!(matches!(
        pending.wait().await,
        ApprovalOutcome::Approved { .. }
    ));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_tokens() {
    let h = harness(Duration::from_secs(60)).await;
    let pending = h.hold("select * from cards").await;
    let id = pending.id.clone();
    let carol = h.approver();

    let (status, body) = h.call(Method::GET, "/v1/health", None, None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));

    let (status, body) = h
        .decide(&carol, "apr-0000000000000000", "approve", "x")
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = h.decide(&carol, &id, "approve", "   ").await;
    assert_eq!(status, 400, "{body}");
    let path = format!("/v1/approvals/{id}/approve");
    let (status, _) = h
        .call(
            Method::POST,
            &path,
            Some(&carol),
            Some("{\"why\":1}".into()),
        )
        .await;
    assert_eq!(status, 400);
    let huge = json!({ "reason": "x".repeat(70 * 1024) }).to_string();
    let (status, _) = h.call(Method::POST, &path, Some(&carol), Some(huge)).await;
    assert_eq!(status, 413);
    let (status, _) = h.call(Method::GET, &path, Some(&carol), None).await;
    assert_eq!(status, 405);
    let (status, _) = h.call(Method::GET, "/v1/nothing", Some(&carol), None).await;
    assert_eq!(status, 404);

    for token in [None, Some("not-a-jwt"), Some(&carol[..carol.len() - 2])] {
        let (status, body) = h.call(Method::GET, "/v1/approvals", token, None).await;
        assert_eq!(status, 401, "{body}");
        assert!(body["error"].is_string());
        let (status, _) = h.decide(token.unwrap_or(""), &id, "approve", "ok").await;
        assert_eq!(status, 401);
    }
    // A token signed with another secret.
    let mut other = h.identity.clone();
    let other_secret = h.dir.path().join("other");
    std::fs::write(&other_secret, "another secret that is long enough!!").unwrap();
    other.hs256_secret_file = Some(other_secret);
    let mut request = MintRequest::new("carol");
    request.groups = vec!["approvers".into()];
    let forged = mint(&other, &request).unwrap();
    let (status, body) = h.decide(&forged, &id, "approve", "ok").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "token rejected: invalid token signature");

    assert_eq!(h.approvals.pending().len(), 1);
    drop(pending);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_withdraws_and_restarts_close_leftovers() {
    let h = harness(Duration::from_secs(60)).await;
    let pending = h.hold("delete from cards").await;
    let id = pending.id.clone();
    drop(pending);
    assert!(h.approvals.pending().is_empty());
    let (status, _) = h.decide(&h.approver(), &id, "approve", "late").await;
    assert_eq!(status, 404);
    // The withdrawal is written in the background.
    let mut decided = None;
    for _ in 0..100 {
        if let Some(d) = h.audit.approval(&id).unwrap().unwrap().decision {
            decided = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let decided = decided.expect("withdrawal recorded");
    assert_eq!(decided.approver, "system:withdrawn");
    assert!(!decided.approved);

    // A request whose process died: its handle is never dropped.
    let lost = h.hold("delete from orders").await;
    let lost_id = lost.id.clone();
    std::mem::forget(lost);
    let config = AdminConfig {
        approval_timeout: Duration::from_secs(60),
        ..AdminConfig::default()
    };
    let restarted = Approvals::new(h.audit.clone(), &config);
    assert_eq!(restarted.close_stale().await.unwrap(), 1);
    let record = h.audit.approval(&lost_id).unwrap().unwrap();
    assert_eq!(record.decision.unwrap().approver, "system:restart");
    assert_eq!(restarted.close_stale().await.unwrap(), 0);
    assert!(h.audit.verify().unwrap().is_ok());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_lists_and_approves() {
    let h = harness(Duration::from_secs(60)).await;
    let pending = h.hold("delete from cards where id = 9").await;
    let id = pending.id.clone();
    let waiter = tokio::spawn(pending.wait());
    let args = |cmd| ApprovalsArgs {
        admin: h.base.clone(),
        token: Some(h.approver()),
        admin_ca: None,
        cmd,
    };
    let run = |args: ApprovalsArgs| {
        tokio::task::spawn_blocking(move || {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = run_with(args, &mut out, &mut err).unwrap();
            let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
            (code, text(out), text(err))
        })
    };

    let (code, out, _) = run(args(ApprovalsCmd::List { full: true })).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    assert!(
        out.contains(&id) && out.contains("alice > agent-7"),
        "{out}"
    );
    assert!(out.contains("delete from cards where id = 9"), "{out}");

    let mut self_approval = args(ApprovalsCmd::Approve {
        id: id.clone(),
        reason: "mine".into(),
    });
    self_approval.token = Some(h.token("alice", &["approvers"], &[]));
    let (code, _, err) = run(self_approval).await.unwrap();
    assert_eq!(code, std::process::ExitCode::FAILURE);
    assert!(err.contains("own request") && err.contains("403"), "{err}");

    let approve = args(ApprovalsCmd::Approve {
        id: id.clone(),
        reason: "checked".into(),
    });
    let (code, out, _) = run(approve).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    assert_eq!(out, format!("{id} approved: checked\n"));
    assert!(matches!(
        waiter.await.unwrap(),
        ApprovalOutcome::Approved { .. }
    ));
    h.shutdown().await;
}

/// Through the real binary, once `main.rs` routes `warden approvals` to the CLI module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_lists_and_denies() {
    let warden = env!("CARGO_BIN_EXE_warden");
    let help = tokio::process::Command::new(warden)
        .args(["approvals", "--help"])
        .output()
        .await
        .unwrap();
    if !help.status.success() {
        eprintln!("skipped: `warden approvals` is not wired into main.rs yet");
        return;
    }
    let h = harness(Duration::from_secs(60)).await;
    let pending = h.hold("delete from cards where id = 3").await;
    let id = pending.id.clone();
    let waiter = tokio::spawn(pending.wait());
    let warden_cmd = |args: &[&str], token: &str| {
        tokio::process::Command::new(warden)
            .args(["approvals", "--admin", &h.base])
            .args(args)
            .env("WARDEN_TOKEN", token)
            .output()
    };

    let out = warden_cmd(&["list"], &h.approver()).await.unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&id) && text.contains("alice > agent-7"),
        "{text}"
    );

    let own = h.token("agent-7", &["approvers"], &[]);
    let out = warden_cmd(&["approve", &id, "--reason", "ok"], &own)
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    let out = warden_cmd(&["deny", &id, "--reason", "no"], &h.approver())
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(matches!(
        waiter.await.unwrap(),
        ApprovalOutcome::Denied { .. }
    ));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_unauthenticated_connections_cannot_lock_approvers_out() {
    use tokio::io::AsyncWriteExt;
    let h = harness(Duration::from_secs(60)).await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    // The attack: many connections that never finish their headers, and some that finish an
    // unauthenticated request and stay open.
    let mut held = Vec::new();
    for i in 0..200 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /v1/approvals HTTP/1.1\r\n")
                .await
                .unwrap();
        } else {
            s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
        }
        held.push(s);
    }
    for who in [h.approver(), h.auditor()] {
        let path = if who == h.approver() {
            "/v1/approvals"
        } else {
            "/v1/audit/verify"
        };
        let (status, body) = h.call(Method::GET, path, Some(&who), None).await;
        assert_eq!(status, 200, "{body}");
    }
    drop(held);
}
