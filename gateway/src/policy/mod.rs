//! The policy engine: loads WebAssembly policy components from a directory, keeps them
//! current (hot reload), and asks a target's chain of policies for one combined verdict per
//! command and for the edits to each batch of result rows.
//!
//! It knows WIT and wasmtime and nothing of wire protocols: adapters hand it [`Session`] and
//! [`Command`] values and get back a [`Decision`]. Every failure is a deny (see [`PolicyError`]).

mod bindings;
mod budget;
/// The generated WIT `protocol`, which [`crate::protocol`] names and serialises.
pub(crate) mod bindings_protocol {
    pub use super::bindings::Protocol;
}
mod cache;
mod error;
mod module;
mod registry;
mod runtime;
mod verdict;

pub use bindings::{Budget, OverBudget, TableBudget};
pub use bindings::{
    CellEdit, Column, ColumnUsage, ColumnUse, Command, CopyTarget, FileOp, Forward, Http, Kube,
    Principal, Protocol, Session, Shell, Sql, SqlCopy, SqlWrite, StdinKind, Verdict,
};
pub use cache::LoadSource;
pub use error::PolicyError;
pub use module::PolicyModule;
pub use registry::ScanReport;
pub use verdict::{Decision, PolicyVerdict};

use crate::units::ByteSize;
use registry::Registry;
use runtime::Runtime;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One result row: cells as text, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// `[policy]` in warden.toml: where modules live and the limits every call runs under.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Directory of `*.wasm` policy components (module name = file name without `.wasm`).
    pub dir: PathBuf,
    /// Where compiled artifacts are cached; default `<dir>/.cache`. `""` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Deadline of one `check` or `mask-rows` call, in the CPU time the call uses: a busy
    /// machine delays a call rather than denying it (a wall-clock backstop of 20 times this
    /// plus a second still ends a call that never gets a core).
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Deadline of instantiating a module and running its `init` (CPU time, as `deadline`).
    #[serde(with = "humantime_serde")]
    pub init_deadline: Duration,
    /// Cap on one instance's linear memory, e.g. `"16MiB"`.
    pub memory_limit: ByteSize,
    /// Most idle initialised instances kept per module and config.
    pub max_idle_instances: usize,
    /// How often the directory is polled for changes; `"0s"` disables hot reload.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Per-module overrides, `[policy.modules.NAME]`: an interpreted policy (Python,
    /// JavaScript) carries its runtime and needs a larger memory cap.
    pub modules: BTreeMap<String, ModuleLimits>,
}

/// `[policy.modules.NAME]`: limits for one module; what is left out takes the `[policy]` value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleLimits {
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub init_deadline: Option<Duration>,
    pub memory_limit: Option<ByteSize>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            dir: PathBuf::from("policies"),
            cache_dir: None,
            deadline: Duration::from_millis(10),
            init_deadline: Duration::from_secs(1),
            memory_limit: ByteSize(16 << 20),
            max_idle_instances: 16,
            reload_interval: Duration::from_millis(250),
            modules: BTreeMap::new(),
        }
    }
}

impl PolicyConfig {
    fn effective_cache_dir(&self) -> Option<PathBuf> {
        match &self.cache_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(dir.clone()),
            None => Some(self.dir.join(".cache")),
        }
    }
}

/// One entry of a target's policy chain: a module and the config string its `init` gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRef {
    pub module: String,
    pub config: Arc<str>,
    /// `mode = "shadow"`: asked like the others and audited, never enforced.
    pub shadow: bool,
}

/// What masking did to a result, for the audit trail: counts per column and rule, no values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskSummary {
    /// (column name, rule) → cells changed.
    pub cells: BTreeMap<(String, String), u64>,
    /// Every edited cell as (row, column), so an adapter re-encodes only those.
    pub edited: Vec<(u32, u32)>,
}

/// A result that must not reach the client: which policy stopped it and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{policy}: {error}")]
pub struct MaskFailure {
    pub policy: String,
    pub error: PolicyError,
}

/// The engine. Cheap to share (`Arc`); calls from many tasks run concurrently.
pub struct PolicyEngine {
    registry: Arc<Registry>,
    watcher: Option<Watcher>,
    startup: ScanReport,
}

impl PolicyEngine {
    /// Load every module in `config.dir`, initialise each with the configs in `chains`, and
    /// start watching the directory (unless `reload_interval` is zero).
    pub async fn start<'a>(
        config: &PolicyConfig,
        chains: impl IntoIterator<Item = &'a PolicyRef>,
    ) -> Result<PolicyEngine, PolicyError> {
        let runtime = Runtime::new(config).map_err(|e| PolicyError::Load(format!("{e:#}")))?;
        let mut configs: HashMap<String, BTreeSet<Arc<str>>> = HashMap::new();
        let mut enforced = BTreeSet::new();
        for r in chains {
            if !r.shadow {
                enforced.insert(r.module.clone());
            }
            configs
                .entry(r.module.clone())
                .or_default()
                .insert(r.config.clone());
        }
        let cache = cache::ArtifactCache::new(config.effective_cache_dir());
        let registry = Arc::new(Registry::new(
            runtime,
            config.dir.clone(),
            cache,
            configs.clone(),
        ));
        let report = registry.scan().await;
        let loaded = registry.modules();
        for name in configs.keys() {
            if loaded.contains_key(name) {
                continue;
            }
            if enforced.contains(name) {
                tracing::error!(policy = %name, "policy used by a target is not loaded: its targets deny everything");
            } else {
                tracing::warn!(policy = %name, "shadow policy is not loaded: its calls are recorded as failures");
            }
        }
        tracing::info!(
            loaded = report.loaded.len(),
            rejected = report.rejected.len(),
            "policies scanned"
        );
        let watcher = (!config.reload_interval.is_zero())
            .then(|| Watcher::start(registry.clone(), config.reload_interval));
        Ok(PolicyEngine {
            registry,
            watcher,
            startup: report,
        })
    }

    /// An engine holding exactly one module file (for `warden policy test` and benchmarks).
    /// Returns the engine and the module's name.
    pub async fn single(
        config: &PolicyConfig,
        path: &Path,
        policy_config: &str,
    ) -> Result<(PolicyEngine, PolicyRef), PolicyError> {
        let runtime = Runtime::new(config).map_err(|e| PolicyError::Load(format!("{e:#}")))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("policy")
            .to_string();
        let reference = PolicyRef {
            module: name.clone(),
            config: policy_config.into(),
            shadow: false,
        };
        let configs = HashMap::from([(name.clone(), BTreeSet::from([reference.config.clone()]))]);
        let cache = cache::ArtifactCache::new(config.effective_cache_dir());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let registry = Arc::new(Registry::new(runtime, dir, cache, configs));
        let module = registry.load_single(&name, path).await?;
        let startup = ScanReport {
            loaded: vec![(name, module.sha256().to_string(), LoadSource::Compiled)],
            ..ScanReport::default()
        };
        Ok((
            PolicyEngine {
                registry,
                watcher: None,
                startup,
            },
            reference,
        ))
    }

    /// Load one more module file under `name`, beside the directory's (`warden policy
    /// whatif` loads its candidate this way). Returns its sha256.
    pub async fn add_module(&self, name: &str, path: &Path) -> Result<String, PolicyError> {
        let module = self.registry.load_single(name, path).await?;
        Ok(module.sha256().to_string())
    }

    /// What the first scan of the policy directory loaded, served from cache, or rejected.
    pub fn startup_report(&self) -> &ScanReport {
        &self.startup
    }

    /// Re-scan the policy directory now (the watcher does this on its own).
    pub async fn rescan(&self) -> ScanReport {
        self.registry.scan().await
    }

    /// Bumped by every hot load, replacement or removal of a module.
    pub fn generation(&self) -> u64 {
        self.registry.generation()
    }

    /// Whether `r` can answer now: its module is loaded and its `init` accepts the config
    /// (an instance is made and kept idle). A reloaded chain is checked so before it applies.
    pub async fn ready(&self, r: &PolicyRef) -> Result<(), PolicyError> {
        match self.module(&r.module) {
            Some(m) => m.warm(&r.config).await,
            None => Err(PolicyError::Missing(r.module.clone())),
        }
    }

    /// The configs of a reloaded chain: a module replaced later must accept them as well.
    pub fn add_configs<'a>(&self, refs: impl IntoIterator<Item = &'a PolicyRef>) {
        for r in refs {
            self.registry.add_config(&r.module, r.config.clone());
        }
    }

    /// Every loaded module with its sha256, by name.
    pub fn loaded(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .registry
            .modules()
            .iter()
            .map(|(name, m)| (name.clone(), m.sha256().to_string()))
            .collect();
        out.sort();
        out
    }

    /// Idle instances per loaded module (for metrics).
    pub fn idle_instances(&self) -> Vec<(String, usize)> {
        self.registry
            .modules()
            .iter()
            .map(|(name, m)| (name.clone(), m.idle_total()))
            .collect()
    }

    /// The loaded version of a module, if any.
    pub fn module(&self, name: &str) -> Option<Arc<PolicyModule>> {
        self.registry.modules().get(name).cloned()
    }

    /// Ask every policy of `chain`, in order, about one command and combine the enforced
    /// verdicts; shadow policies' verdicts ride beside the decision, never in it.
    pub async fn check(
        &self,
        chain: &[PolicyRef],
        session: &Session,
        command: &Command,
    ) -> Decision {
        let modules = self.registry.modules();
        let mut verdicts = Vec::with_capacity(chain.len());
        let mut shadow = Vec::new();
        for r in chain {
            let started = Instant::now();
            let (sha256, result, module) = match modules.get(&r.module) {
                Some(m) => {
                    let result = m.check(&r.config, session, command).await;
                    (
                        m.sha256().to_string(),
                        result,
                        Some((m.clone(), r.config.clone())),
                    )
                }
                None => (
                    String::new(),
                    Err(PolicyError::Missing(r.module.clone())),
                    None,
                ),
            };
            let (verdict, failure) = match result {
                Ok(v) => (v, None),
                Err(e) => (Verdict::Deny(e.to_string()), Some(e)),
            };
            // The rest of the host sees four verdicts; a budget travels beside its verdict.
            let (verdict, budget) = match verdict {
                Verdict::AllowWithin(b) => (Verdict::Allow, Some(b)),
                Verdict::MaskWithin(b) => (Verdict::Mask, Some(b)),
                v => (v, None),
            };
            let answer = PolicyVerdict {
                policy: r.module.clone(),
                sha256,
                verdict,
                budget,
                latency: started.elapsed(),
                failure,
                module,
            };
            crate::metrics::policy_call(&session.target, r, &answer);
            if r.shadow {
                shadow.push(answer);
            } else {
                verdicts.push(answer);
            }
        }
        let mut decision = Decision::combine(verdicts);
        decision.shadow = shadow;
        decision
    }

    /// Check every statement of one message; the strictest decision stands for the message.
    pub async fn check_all(
        &self,
        chain: &[PolicyRef],
        session: &Session,
        commands: &[Command],
    ) -> Vec<Decision> {
        let mut out = Vec::with_capacity(commands.len());
        for c in commands {
            out.push(self.check(chain, session, c).await);
        }
        out
    }

    /// A decision in which every loaded policy of `chain` answered `mask`: lets offline tools
    /// (`warden policy test`, benchmarks) run `mask-rows` without a command.
    pub fn assume_mask(&self, chain: &[PolicyRef]) -> Decision {
        let modules = self.registry.modules();
        let verdicts = chain
            .iter()
            .filter(|r| !r.shadow)
            .filter_map(|r| modules.get(&r.module).map(|m| (r, m)))
            .map(|(r, m)| PolicyVerdict {
                policy: r.module.clone(),
                sha256: m.sha256().to_string(),
                verdict: Verdict::Mask,
                budget: None,
                latency: Duration::ZERO,
                failure: None,
                module: Some((m.clone(), r.config.clone())),
            })
            .collect();
        Decision::combine(verdicts)
    }

    /// Pass one batch of rows through every policy that answered `mask` in `decision`, in chain
    /// order, applying each one's edits before the next sees the rows. On error nothing of the
    /// batch may be sent.
    pub async fn mask_rows(
        &self,
        decision: &Decision,
        session: &Session,
        columns: &[Column],
        rows: &mut [Row],
    ) -> Result<MaskSummary, MaskFailure> {
        let mut summary = MaskSummary::default();
        for pv in decision
            .policies
            .iter()
            .filter(|p| p.verdict == Verdict::Mask)
        {
            let Some((module, config)) = &pv.module else {
                continue;
            };
            let edits = module
                .mask_rows(config, session, columns, rows)
                .await
                .map_err(|error| MaskFailure {
                    policy: pv.policy.clone(),
                    error,
                })?;
            for edit in edits {
                let (r, c) = (edit.row as usize, edit.column as usize);
                // validated by the module: indices are in range
                if let Some(cell) = rows.get_mut(r).and_then(|row| row.get_mut(c)) {
                    *cell = edit.value;
                }
                summary.edited.push((edit.row, edit.column));
                let column = columns
                    .get(c)
                    .map_or_else(|| format!("#{c}"), |col| col.name.clone());
                *summary.cells.entry((column, edit.rule)).or_default() += 1;
            }
        }
        Ok(summary)
    }
}

/// The hot-reload poller: its own thread with a small runtime, so compiling and initialising
/// a new module never competes with the serving runtime's workers.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(registry: Arc<Registry>, interval: Duration) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("warden-policy-watch".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("policy hot reload disabled: {e}");
                        return;
                    }
                };
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    rt.block_on(registry.scan());
                }
            });
        match thread {
            Ok(t) => Watcher {
                stop,
                thread: Some(t),
            },
            Err(e) => {
                tracing::error!("policy hot reload disabled: {e}");
                Watcher { stop, thread: None }
            }
        }
    }
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        if let Some(w) = &mut self.watcher {
            w.stop.store(true, Ordering::Relaxed);
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}
