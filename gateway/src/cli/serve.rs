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
    // What the file looked like when loaded: a change made while the gateway starts is picked
    // up by the first poll.
    let loaded = super::reload::Loaded::read(&args.config);
    let config = Config::load(&args.config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(crate::command::sql::READER_STACK)
        .build()?;
    rt.block_on(serve(config, args.config, loaded))
}

async fn serve(
    config: Config,
    path: PathBuf,
    loaded: super::reload::Loaded,
) -> anyhow::Result<ExitCode> {
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
    let reload = tokio::spawn(super::reload::watch(gw.clone(), path, loaded));
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
