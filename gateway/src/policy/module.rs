//! One loaded policy module: its compiled component, `InstancePre`, and pools of initialised
//! instances (one pool per config string), with every call under the deadline and memory cap.
//!
//! Instances are reused across calls because instantiation costs far more than a call (see
//! BENCHMARKS.md); an instance that failed in any way is dropped, never re-entered.

use super::bindings::{CellEdit, Column, Command, Policy, PolicyPre, Session, Verdict};
use super::error::PolicyError;
use super::runtime::{HostState, Limits, Runtime};
use std::collections::HashMap;
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
    pools: Mutex<HashMap<Arc<str>, Vec<Instance>>>,
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
}

impl PolicyModule {
    /// Link a compiled component. Fails when it does not implement the policy world or imports
    /// something the sandbox does not provide.
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        name: &str,
        sha256: String,
        component: &Component,
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
            pools: Mutex::new(HashMap::new()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
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
        let mut inst = self.take(config).await?;
        self.runtime.arm(&mut inst.store, self.limits.deadline);
        match inst
            .bindings
            .call_check(&mut inst.store, session, command)
            .await
        {
            Ok(verdict) => {
                self.put_back(config, inst);
                Ok(match verdict {
                    Verdict::Deny(r) => Verdict::Deny(truncate(&r, MAX_TEXT)),
                    Verdict::RequireApproval(r) => Verdict::RequireApproval(truncate(&r, MAX_TEXT)),
                    v => v,
                })
            }
            Err(e) => Err(self.classify(e, &inst.store, self.limits.deadline)),
        }
    }

    /// Ask for the edits to one batch of rows. Edits are checked against the batch's shape.
    pub async fn mask_rows(
        &self,
        config: &Arc<str>,
        session: &Session,
        columns: &[Column],
        rows: &[Vec<Option<String>>],
    ) -> Result<Vec<CellEdit>, PolicyError> {
        let mut inst = self.take(config).await?;
        self.runtime.arm(&mut inst.store, self.limits.deadline);
        let result = inst
            .bindings
            .call_mask_rows(&mut inst.store, session, columns, rows)
            .await;
        match result {
            Ok(Ok(edits)) => {
                self.put_back(config, inst);
                validate_edits(&edits, rows)?;
                Ok(edits)
            }
            Ok(Err(message)) => {
                self.put_back(config, inst);
                Err(PolicyError::Refused(truncate(&message, MAX_TEXT)))
            }
            Err(e) => Err(self.classify(e, &inst.store, self.limits.deadline)),
        }
    }

    /// Number of idle instances for `config` (for tests and metrics).
    pub fn idle_instances(&self, config: &str) -> usize {
        self.pools
            .lock()
            .map(|p| p.get(config).map_or(0, Vec::len))
            .unwrap_or(0)
    }

    async fn take(&self, config: &Arc<str>) -> Result<Instance, PolicyError> {
        let idle = match self.pools.lock() {
            Ok(mut pools) => pools.get_mut(config).and_then(Vec::pop),
            Err(_) => None,
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
        let bindings = match self.pre.instantiate_async(&mut store).await {
            Ok(b) => b,
            Err(e) => return Err(self.classify(e, &store, self.limits.init_deadline)),
        };
        match bindings.call_init(&mut store, config).await {
            Ok(Ok(())) => Ok(Instance { store, bindings }),
            Ok(Err(message)) => Err(PolicyError::Init(truncate(&message, MAX_TEXT))),
            Err(e) => Err(self.classify(e, &store, self.limits.init_deadline)),
        }
    }

    /// Turn a wasmtime error into the cause the audit trail records.
    fn classify(
        &self,
        e: wasmtime::Error,
        store: &Store<HostState>,
        deadline: Duration,
    ) -> PolicyError {
        let err = if store.data().limiter.hit {
            PolicyError::MemoryCap(self.limits.memory_limit as u64)
        } else {
            match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => PolicyError::Deadline(deadline),
                Some(trap) => PolicyError::Trap(trap.to_string()),
                // Not a trap: the guest's answer could not be lifted (bad UTF-8, bad variant...).
                None => PolicyError::Malformed(truncate(&format!("{e:#}"), MAX_TEXT)),
            }
        };
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
