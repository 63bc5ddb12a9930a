//! `warden serve --config warden.toml`: the gateway. Loads policies, opens the audit store,
//! starts the protocol listeners and the loopback admin API, and runs until SIGINT/SIGTERM.
//!
//! Prints one line per listener to stdout once it accepts connections
//! (`postgres listening on 127.0.0.1:6432`, `ssh listening on ...`, `admin listening on ...`), so scripts and tests can
//! wait for readiness and learn ports chosen with `:0`.

use crate::admin::{self, AdminState};
use crate::approvals::Approvals;
use crate::audit::AuditStore;
use crate::config::Config;
use crate::identity::Verifier;
use crate::policy::PolicyEngine;
use crate::proxy::accept::FrontDoor;
use crate::proxy::postgres::Postgres;
use crate::proxy::ssh::Ssh;
use crate::session::Gateway;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::watch;

/// How often retention looks for what is due (and at start).
const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long shutdown waits for open sessions to close.
const SESSION_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The configuration file.
    #[arg(long, default_value = "warden.toml")]
    pub config: PathBuf,
    /// How log lines on standard error are written: `text` for people, `json` (one object
    /// per line: time, level, target, fields, message) for log pipelines.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(crate::command::sql::READER_STACK)
        .build()?;
    rt.block_on(serve(config, args.config))
}

async fn serve(config: Config, path: PathBuf) -> anyhow::Result<ExitCode> {
    let engine = PolicyEngine::start(&config.policy, &config.all_policy_refs()).await?;
    let audit = AuditStore::from_config(&config.audit)?;
    // Sessions a crashed gateway left open get their audited end before anyone connects.
    for orphan in audit.close_orphans().await? {
        tracing::warn!(
            session = %orphan.session,
            "session left open by a gateway that stopped unexpectedly (last event at {}): ended",
            orphan.last_event
        );
    }
    // Sign what the last run left, then at the configured interval, and once more at shutdown.
    let checkpoints = audit.checkpoint_interval().map(|interval| {
        let audit = audit.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = audit.checkpoint().await {
                    tracing::error!("audit checkpoint: {e}");
                }
                tokio::time::sleep(interval).await;
            }
        })
    });
    let retention = config.audit.retain.map(|retain| {
        if retain < std::time::Duration::from_secs(365 * 86_400) {
            tracing::warn!("[audit] retain is shorter than the 12 months PCI DSS 10.5.1 asks for");
        }
        let audit = audit.clone();
        tokio::spawn(async move {
            loop {
                let before = std::time::SystemTime::now()
                    .checked_sub(retain)
                    .map(crate::audit::Timestamp::from_system_time);
                if let Some(before) = before {
                    match audit.prune(before).await {
                        Ok(Some(p)) => tracing::info!(
                            through = p.through,
                            sessions = p.sessions,
                            "audit retention ran"
                        ),
                        Ok(None) => {}
                        Err(e) => tracing::error!("audit retention: {e}"),
                    }
                }
                tokio::time::sleep(RETENTION_INTERVAL).await;
            }
        })
    });
    crate::proxy::postgres::check_upstreams(&config).await?;
    crate::proxy::ssh::check_upstreams(&config).await?;
    let verifier = Verifier::from_config(&config.identity)?;
    let approvals = Approvals::new(audit.clone(), &config.admin);
    let admin_tls = admin::tls(&config.admin)?;
    let admin_listener = admin::bind(config.admin.listen, admin_tls.is_some()).await?;
    let pg_listener = match &config.postgres {
        Some(pg) => Some((
            tokio::net::TcpListener::bind(pg.listen).await?,
            pg.max_connections,
        )),
        None => None,
    };
    let ssh_listener = match &config.ssh {
        Some(ssh) => Some((
            tokio::net::TcpListener::bind(ssh.listen).await?,
            ssh.max_connections,
        )),
        None => None,
    };
    for (name, t) in &config.targets {
        if t.allow_privileged_upstream {
            tracing::warn!(target = %name, "allow_privileged_upstream: the upstream login may be privileged");
        }
    }
    let door = Arc::new(FrontDoor::new(&config.connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let gw = Arc::new(Gateway::new(
        config,
        engine,
        audit.clone(),
        verifier,
        approvals.clone(),
        stop_rx.clone(),
    ));

    // Refused logins past the per-address rate are counted; the counts are noted every minute.
    let counts = {
        let gw = gw.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                gw.note_refusal_counts().await;
            }
        })
    };
    let reload = tokio::spawn(watch_config(gw.clone(), path));
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = tokio::task::JoinSet::new();
    let mut out = std::io::stdout();
    if let (Some((listener, max)), Some(pg)) = (pg_listener, Postgres::new(gw.clone())?) {
        writeln!(out, "postgres listening on {}", listener.local_addr()?)?;
        tasks.spawn(
            door.clone()
                .serve(listener, max, Arc::new(pg), stopped(stop_rx.clone())),
        );
    }
    if let (Some((listener, max)), Some(ssh)) = (ssh_listener, Ssh::new(gw.clone())?) {
        writeln!(out, "ssh listening on {}", listener.local_addr()?)?;
        if let Some(fingerprint) = ssh.fingerprint() {
            // Clients pin this (known_hosts), as they would a host's own key.
            writeln!(out, "ssh host key {fingerprint}")?;
        }
        tasks.spawn(
            door.clone()
                .serve(listener, max, Arc::new(ssh), stopped(stop_rx.clone())),
        );
    }
    writeln!(out, "admin listening on {}", admin_listener.local_addr()?)?;
    out.flush()?;
    let state = AdminState {
        approvals,
        verifier: Arc::new(Verifier::from_config(&gw.config().identity)?),
        audit: audit.clone(),
        auditors: Arc::new(gw.config().admin.auditor_groups.clone()),
        metrics_groups: gw.config().admin.metrics_groups.clone().map(Arc::new),
        gateway: Some(gw.clone()),
    };
    let admin_stop = stopped(stop_rx.clone());
    tasks.spawn(async move {
        if let Err(e) = admin::serve(admin_listener, state, admin_tls, admin_stop).await {
            tracing::error!("admin API: {e}");
        }
    });

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    // Open sessions are told and closed (each with its audited end) by their adapters.
    let open = gw.lifecycle().open_sessions();
    if open > 0 {
        tracing::info!("closing {open} open sessions");
        if tokio::time::timeout(SESSION_CLOSE_WAIT, gw.lifecycle().all_closed())
            .await
            .is_err()
        {
            tracing::warn!(
                "{} sessions did not close in time (approval waits, stuck clients)",
                gw.lifecycle().open_sessions()
            );
        }
    }
    if let Some(task) = retention {
        task.abort();
    }
    counts.abort();
    reload.abort();
    gw.note_refusal_counts().await;
    if let Some(task) = checkpoints {
        task.abort();
        match audit.checkpoint().await {
            Ok(Some(signed)) => tracing::info!(seq = signed.seq, "audit checkpoint at shutdown"),
            Ok(None) => {}
            Err(e) => tracing::error!("audit checkpoint at shutdown: {e}"),
        }
    }
    // Closed cleanly, the file needs no recovery when auditors open it.
    drop(gw);
    if let Err(e) = audit.close_when_alone(SESSION_CLOSE_WAIT).await {
        tracing::warn!("audit store not closed cleanly ({e}): it is recovered on next open");
    }
    Ok(ExitCode::SUCCESS)
}

/// Reload the targets' policy chains when the config file changes (polled at the policy
/// directory's `reload_interval`) or on SIGHUP. A file that does not load is refused and the
/// running chains stay; either way the outcome is audited.
async fn watch_config(gw: Arc<Gateway>, path: PathBuf) {
    let stamp = |p: &PathBuf| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let interval = gw.config().policy.reload_interval;
    let mut seen = stamp(&path);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let poll = async {
            if interval.is_zero() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(interval).await
            }
        };
        #[cfg(unix)]
        let hangup = async {
            match &mut hup {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        let forced = tokio::select! {
            () = poll => false,
            () = hangup => true,
        };
        let now = stamp(&path);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        reload_chains(&gw, &path).await;
    }
}

async fn reload_chains(gw: &Gateway, path: &std::path::Path) {
    let refuse = |why: String| async move {
        tracing::error!("config not reloaded, the running chains stay: {why}");
        gw.note(
            "config-reload",
            format!("refused, the running chains stay: {why}"),
        )
        .await;
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => return refuse(e.to_string()).await,
    };
    let running: BTreeSet<&String> = gw.config().targets.keys().collect();
    let wanted: BTreeSet<&String> = config.targets.keys().collect();
    let added: Vec<&str> = wanted.difference(&running).map(|t| t.as_str()).collect();
    let removed: Vec<&str> = running.difference(&wanted).map(|t| t.as_str()).collect();
    if !added.is_empty() || !removed.is_empty() {
        let message = format!(
            "targets added ({}) or removed ({}) take effect at restart; until then the running \
             targets stay as they are",
            added.join(", "),
            removed.join(", ")
        );
        tracing::warn!("{message}");
        gw.note("config-reload", message).await;
    }
    let changed = gw.changed_chains(&config);
    if changed.is_empty() {
        return;
    }
    // Every entry must load and accept its config now: a typo or a config its policy refuses
    // would otherwise turn the target into one that denies everything.
    for (target, chain) in &changed {
        for r in chain.iter() {
            if let Err(e) = gw.engine().ready(r).await {
                return refuse(format!("target {target}: {}: {e}", r.module)).await;
            }
        }
    }
    let mut lines = Vec::new();
    for (target, chain) in &changed {
        let entries: Vec<String> = chain
            .iter()
            .map(|r| {
                let mode = if r.shadow { "shadow" } else { "enforce" };
                match &*r.config {
                    "" => format!("{} ({mode})", r.module),
                    config => format!("{} ({mode}) config {config}", r.module),
                }
            })
            .collect();
        lines.push(format!("{target}: {}", entries.join(", ")));
    }
    // Audited before it applies: no command is judged by a chain the trail does not name,
    // configs included (a loosened limit shows as what it became).
    let message = format!("policy chains reloaded: {}", lines.join("; "));
    tracing::info!("{message}");
    gw.note("config-reload", message).await;
    gw.set_chains(changed);
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
