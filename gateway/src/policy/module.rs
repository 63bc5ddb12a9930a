//! One loaded policy module: its compiled component, `InstancePre`, and pools of initialised
//! instances (one pool per config string), with every call under the deadline and memory cap.
//!
//! Instances are reused across calls because instantiation costs far more than a call (see
//! BENCHMARKS.md); an instance that failed in any way is dropped, never re-entered.
//!
//! The one exception to "a failed call is a deny": a reused instance that hits the memory cap,
//! whose call is run again once on a fresh instance (see `PolicyModule::settle` for why that,
//! and only that, is retried).

use super::bindings::{CellEdit, Column, Command, Policy, PolicyPre, Session, Verdict};
use super::error::PolicyError;
use super::runtime::{HostState, Limits, Runtime};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Store, Trap};

/// Longest reason or error text taken from a policy.
const MAX_TEXT: usize = 1024;

/// A compiled, linked policy module.
pub struct PolicyModule {
    name: Arc<str>,
    sha256: String,
    pre: PolicyPre<HostState>,
    runtime: Arc<Runtime>,
    limits: Limits,
    /// How long compiling the component (or deserializing it from the cache) took.
    load_time: Duration,
    pools: Mutex<HashMap<Arc<str>, Vec<Instance>>>,
    /// Calls retried on a fresh instance after a reused one hit the memory cap.
    fresh_retries: AtomicU64,
}

impl std::fmt::Debug for PolicyModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyModule")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .finish()
    }
}

/// An initialised instance and its store.
struct Instance {
    store: Store<HostState>,
    bindings: Policy,
    /// Whether a call has returned on it: its memory then holds more than `init` left.
    served: bool,
}

impl PolicyModule {
    /// Link a compiled component. Fails when it does not implement the policy world or imports
    /// something the sandbox does not provide.
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        name: &str,
        sha256: String,
        component: &Component,
        load_time: Duration,
    ) -> Result<PolicyModule, PolicyError> {
        let pre = runtime
            .linker
            .instantiate_pre(component)
            .and_then(PolicyPre::new)
            .map_err(|e| PolicyError::Load(format!("{e:#}")))?;
        let limits = runtime.limits_for(name);
        Ok(PolicyModule {
            name: name.into(),
            sha256,
            pre,
            runtime,
            limits,
            load_time,
            pools: Mutex::new(HashMap::new()),
            fresh_retries: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// How long compiling the component (or deserializing it from the cache) took; linking
    /// and `init` are not included.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Create and initialise one instance for `config` and keep it idle: proves `init` accepts
    /// the config before the module is swapped in, and keeps the first call off the slow path.
    pub async fn warm(&self, config: &Arc<str>) -> Result<(), PolicyError> {
        let instance = self.instantiate(config).await?;
        self.put_back(config, instance);
        Ok(())
    }

    /// Ask for a verdict on one command.
    pub async fn check(
        &self,
        config: &Arc<str>,
        session: &Session,
        command: &Command,
    ) -> Result<Verdict, PolicyError> {
        let mut fresh = false;
        let verdict = loop {
            let mut inst = self.take(config, fresh).await?;
            self.runtime.arm(&mut inst.store, self.limits.deadline);
            let result = inst
                .bindings
                .call_check(&mut inst.store, session, command)
                .await;
            match self.settle(config, inst, result)? {
                Some(verdict) => break verdict,
                None => fresh = true,
            }
        };
        Ok(match verdict {
            Verdict::Deny(r) => Verdict::Deny(truncate(&r, MAX_TEXT)),
            Verdict::RequireApproval(r) => Verdict::RequireApproval(truncate(&r, MAX_TEXT)),
            v => v,
        })
    }

    /// Ask for the edits to one batch of rows. Edits are checked against the batch's shape.
    pub async fn mask_rows(
        &self,
        config: &Arc<str>,
        session: &Session,
        columns: &[Column],
        rows: &[Vec<Option<String>>],
    ) -> Result<Vec<CellEdit>, PolicyError> {
        let mut fresh = false;
        let answer = loop {
            let mut inst = self.take(config, fresh).await?;
            self.runtime.arm(&mut inst.store, self.limits.deadline);
            let result = inst
                .bindings
                .call_mask_rows(&mut inst.store, session, columns, rows)
                .await;
            match self.settle(config, inst, result)? {
                Some(answer) => break answer,
                None => fresh = true,
            }
        };
        // A refusal is the policy's answer, not a failure of the instance (which was kept).
        let edits = answer.map_err(|message| PolicyError::Refused(truncate(&message, MAX_TEXT)))?;
        validate_edits(&edits, rows)?;
        Ok(edits)
    }

    /// Number of idle instances for `config` (for tests and metrics).
    pub fn idle_instances(&self, config: &str) -> usize {
        self.pools
            .lock()
            .map(|p| p.get(config).map_or(0, Vec::len))
            .unwrap_or(0)
    }

    /// Idle instances over every config (for metrics).
    pub fn idle_total(&self) -> usize {
        self.pools
            .lock()
            .map(|p| p.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Linear memory in bytes of each idle instance for `config`, most recently used last
    /// (for tests, benchmarks and metrics).
    pub fn idle_memory(&self, config: &str) -> Vec<usize> {
        self.pools
            .lock()
            .map(|p| {
                p.get(config).map_or_else(Vec::new, |pool| {
                    pool.iter().map(|i| i.store.data().limiter.used()).collect()
                })
            })
            .unwrap_or_default()
    }

    /// Calls that a reused instance failed with memory-cap and a fresh one was given (for
    /// tests and metrics).
    pub fn fresh_retries(&self) -> u64 {
        self.fresh_retries.load(Ordering::Relaxed)
    }

    /// Settle one call on `inst`: when it returned, the instance goes back to the pool and the
    /// answer is `Some`; when it failed, the instance is dropped and the failure is the deny —
    /// with one exception, answered `None`: the caller runs the call again on a fresh
    /// instance, and that attempt's outcome stands.
    ///
    /// The exception: a *reused* instance (one that has served calls) failed with memory-cap.
    /// Linear memory only grows, and a guest with a garbage-collected heap (JavaScript copies
    /// every request body into its heap) keeps earlier calls' garbage until its collector
    /// runs, so a call that fits a fresh instance easily can meet the cap on a used one.
    /// Retrying is safe and bounded:
    /// - a policy is a pure function of its arguments (the sandbox gives it no clock, I/O or
    ///   randomness), so running a call again repeats nothing the world sees but `log`;
    /// - a fresh instance is exactly the module's state after `init`: if the call fails there
    ///   as well, it needs more than the cap by itself, and that memory-cap deny is recorded.
    ///   A fresh instance's failure is never retried;
    /// - deadline, trap and malformed answers are not retried: they do not come from what
    ///   earlier calls left behind, and retrying a deadline would double what a hostile input
    ///   can cost. Worst case, a call takes deadline + init deadline + deadline; the latency
    ///   the engine reports covers both attempts.
    ///
    /// Not chosen: retiring an instance once its memory passes some fraction of the cap. A
    /// threshold guarantees nothing (a call needing more than the headroom left still fails)
    /// and costs on the common path: a JavaScript instance under the 10 MiB cap of its case
    /// file starts at ≈ 9 MiB, above any useful fraction, so every call would pay for a fresh
    /// instance (≈ 0.6 ms, against ≈ 45 µs for the call; BENCHMARKS.md).
    fn settle<T>(
        &self,
        config: &Arc<str>,
        mut inst: Instance,
        result: wasmtime::Result<T>,
    ) -> Result<Option<T>, PolicyError> {
        let e = match result {
            Ok(answer) => {
                inst.served = true;
                self.put_back(config, inst);
                return Ok(Some(answer));
            }
            Err(e) => e,
        };
        let err = self.classify(e, &inst.store, self.limits.deadline);
        if inst.served && matches!(err, PolicyError::MemoryCap(_)) {
            self.fresh_retries.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                policy = %self.name,
                sha256 = %self.sha256,
                "a reused instance reached the memory cap; retrying on a fresh instance"
            );
            return Ok(None);
        }
        Err(self.failed(err))
    }

    /// An idle instance for `config` or, when there is none or `fresh` is set, a new one.
    async fn take(&self, config: &Arc<str>, fresh: bool) -> Result<Instance, PolicyError> {
        let idle = match self.pools.lock() {
            Ok(mut pools) if !fresh => pools.get_mut(config).and_then(Vec::pop),
            Ok(_) | Err(_) => None,
        };
        match idle {
            Some(instance) => Ok(instance),
            None => self.instantiate(config).await,
        }
    }

    fn put_back(&self, config: &Arc<str>, instance: Instance) {
        if let Ok(mut pools) = self.pools.lock() {
            let pool = pools.entry(config.clone()).or_default();
            if pool.len() < self.runtime.max_idle {
                pool.push(instance);
            }
        }
    }

    async fn instantiate(&self, config: &Arc<str>) -> Result<Instance, PolicyError> {
        let mut store = self.runtime.store(self.name.clone(), &self.limits);
        self.runtime.arm(&mut store, self.limits.init_deadline);
        let deadline = self.limits.init_deadline;
        let bindings = match self.pre.instantiate_async(&mut store).await {
            Ok(b) => b,
            Err(e) => return Err(self.failed(self.classify(e, &store, deadline))),
        };
        match bindings.call_init(&mut store, config).await {
            Ok(Ok(())) => Ok(Instance {
                store,
                bindings,
                served: false,
            }),
            Ok(Err(message)) => Err(PolicyError::Init(truncate(&message, MAX_TEXT))),
            Err(e) => Err(self.failed(self.classify(e, &store, deadline))),
        }
    }

    /// Turn a wasmtime error into the cause the audit trail records.
    fn classify(
        &self,
        e: wasmtime::Error,
        store: &Store<HostState>,
        deadline: Duration,
    ) -> PolicyError {
        if store.data().limiter.hit {
            PolicyError::MemoryCap(self.limits.memory_limit as u64)
        } else {
            match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => PolicyError::Deadline(deadline),
                Some(trap) => PolicyError::Trap(trap.to_string()),
                // Not a trap: the guest's answer could not be lifted (bad UTF-8, bad variant...).
                None => PolicyError::Malformed(truncate(&format!("{e:#}"), MAX_TEXT)),
            }
        }
    }

    /// Log a failure that becomes a deny.
    fn failed(&self, err: PolicyError) -> PolicyError {
        tracing::warn!(policy = %self.name, sha256 = %self.sha256, cause = err.cause(), "{err}");
        err
    }
}

/// Reject edits that point outside the batch or that edit more cells than the batch has.
fn validate_edits(edits: &[CellEdit], rows: &[Vec<Option<String>>]) -> Result<(), PolicyError> {
    let cells: usize = rows.iter().map(Vec::len).sum();
    if edits.len() > cells {
        return Err(PolicyError::Malformed(format!(
            "{} edits for a batch of {cells} cells",
            edits.len()
        )));
    }
    for edit in edits {
        let in_range = rows
            .get(edit.row as usize)
            .is_some_and(|row| (edit.column as usize) < row.len());
        if !in_range {
            return Err(PolicyError::Malformed(format!(
                "edit at row {} column {} is outside the batch",
                edit.row, edit.column
            )));
        }
    }
    Ok(())
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
