//! What every session shares: config, policy engine, audit store, token verifier, approvals,
//! the session caps, and the lifecycle (shutdown, and the count of open sessions that
//! `warden serve` waits for).

use super::admit::Slots;
use crate::approvals::Approvals;
use crate::audit::{AuditError, AuditStore};
use crate::config::Config;
use crate::identity::Verifier;
use crate::policy::{PolicyEngine, PolicyRef};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Each target's policy chain, as the config last loaded says (hot reload swaps it whole).
pub type Chains = BTreeMap<String, Arc<[PolicyRef]>>;

/// Everything sessions share. Adapters reach it through [`super::Session`] and
/// [`Gateway::authenticate`]; its parts are private to the session path.
pub struct Gateway {
    pub(super) config: Config,
    pub(super) engine: PolicyEngine,
    pub(super) audit: AuditStore,
    pub(super) verifier: Verifier,
    pub(super) approvals: Approvals,
    pub(super) lifecycle: Lifecycle,
    pub(super) slots: Slots,
    pub(super) refusals: super::admit::RefusalLog,
    /// The chains commands are judged by. Read per command, so a reloaded chain (a policy
    /// switched from shadow to enforce) applies to open sessions at their next command.
    chains: ArcSwap<Chains>,
    /// Bumped by every chain reload (see [`Generation`]).
    chain_generation: std::sync::atomic::AtomicU64,
}

/// Which policies a verdict was taken under: the chains' reload count and the module set's
/// change count. A verdict kept for later use (a prepared statement's) is stale once either
/// moves on, and is taken again before it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generation {
    pub chains: u64,
    pub modules: u64,
}

impl Gateway {
    pub fn new(
        config: Config,
        engine: PolicyEngine,
        audit: AuditStore,
        verifier: Verifier,
        approvals: Approvals,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Gateway {
        let chains = ArcSwap::from_pointee(chains_of(&config));
        Gateway {
            chains,
            chain_generation: std::sync::atomic::AtomicU64::new(0),
            config,
            engine,
            audit,
            verifier,
            approvals,
            lifecycle: Lifecycle::new(stop),
            slots: Slots::default(),
            refusals: super::admit::RefusalLog::default(),
        }
    }

    /// The configuration the gateway runs with (adapters read their own sections).
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The policy engine (for metrics read at scrape time).
    pub fn engine(&self) -> &PolicyEngine {
        &self.engine
    }

    /// The policies in force now (see [`Generation`]).
    pub fn generation(&self) -> Generation {
        Generation {
            chains: self
                .chain_generation
                .load(std::sync::atomic::Ordering::SeqCst),
            modules: self.engine.generation(),
        }
    }

    /// `target`'s chain as it stands now (empty for an unknown target: it denies).
    pub fn chain(&self, target: &str) -> Arc<[PolicyRef]> {
        self.chains
            .load()
            .get(target)
            .cloned()
            .unwrap_or_else(|| Arc::from(Vec::new()))
    }

    /// The chains of a reloaded config that differ from the running ones, for the targets this
    /// gateway serves. Targets added or removed need a restart (their listeners, upstreams and
    /// admission rules are not reloaded), so they are left out.
    pub fn changed_chains(&self, config: &Config) -> Chains {
        let current = self.chains.load();
        chains_of(config)
            .into_iter()
            .filter(|(target, new)| current.get(target).is_some_and(|old| old != new))
            .collect()
    }

    /// Put `changed` (from [`Self::changed_chains`]) in force.
    pub fn set_chains(&self, changed: Chains) {
        self.chains.rcu(|current| {
            let mut next = Chains::clone(current);
            for (target, chain) in &changed {
                if let Some(slot) = next.get_mut(target) {
                    *slot = chain.clone();
                }
            }
            next
        });
        self.chain_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// A gateway-wide audit note (a refused login, a refused connection), durable before this
    /// returns; failures are logged, never raised: a refusal stands either way.
    pub async fn note(&self, topic: &str, message: String) {
        if let Err(e) = self.record_note(topic, &message).await {
            tracing::error!("cannot audit a {topic} note: {e}");
        }
    }

    /// [`Self::note`] for a change that may take effect only once it is recorded.
    pub async fn record_note(&self, topic: &str, message: &str) -> Result<u64, AuditError> {
        let note = crate::audit::Note {
            topic: topic.to_string(),
            message: super::scrub(message),
        };
        let event = crate::audit::NewEvent::global(crate::audit::EventKind::Note(note));
        self.audit.append(event).await
    }
}

fn chains_of(config: &Config) -> Chains {
    config
        .targets
        .iter()
        .map(|(name, t)| (name.clone(), Arc::from(t.chain())))
        .collect()
}

/// Shutdown without losing the end of a session: adapters watch [`Lifecycle::stopping`], end
/// their sessions with [`super::Session::close`] (audited), and `warden serve` waits for the
/// count of open sessions to reach zero before it exits.
pub struct Lifecycle {
    stop: tokio::sync::watch::Receiver<bool>,
    pub(super) open: std::sync::atomic::AtomicUsize,
    pub(super) closed: tokio::sync::Notify,
}

impl Lifecycle {
    pub fn new(stop: tokio::sync::watch::Receiver<bool>) -> Lifecycle {
        Lifecycle {
            stop,
            open: std::sync::atomic::AtomicUsize::new(0),
            closed: tokio::sync::Notify::new(),
        }
    }

    /// Resolves once the gateway is shutting down.
    pub async fn stopping(&self) {
        let mut rx = self.stop.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sessions opened and not yet closed.
    pub fn open_sessions(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wait until every open session has been closed.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open_sessions() == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(super) fn opened(&self) {
        self.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) fn ended(&self) {
        self.open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.closed.notify_waiters();
    }
}
