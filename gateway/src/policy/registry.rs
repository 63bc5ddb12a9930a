//! The set of loaded policy modules and how it changes: the policy directory is scanned at start
//! and then polled; a new or changed `.wasm` is compiled and initialised off the hot path and
//! swapped in atomically, a removed one is unloaded, a broken one is rejected and the old
//! version stays. Calls in flight hold an `Arc` to the version they started with.
//!
//! Polling (not inotify) because it behaves the same on every filesystem, including bind mounts
//! and network storage, and a stat of a small directory every 250 ms costs nothing.

use super::cache::{ArtifactCache, LoadSource};
use super::error::PolicyError;
use super::module::PolicyModule;
use super::runtime::Runtime;
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Loaded modules by name (file name without `.wasm`).
pub(crate) type ModuleMap = HashMap<String, Arc<PolicyModule>>;

/// What one scan of the directory did; logged, and returned for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Modules loaded or replaced, with their new sha256 and whether the cache served them.
    pub loaded: Vec<(String, String, LoadSource)>,
    /// Modules unloaded because their file disappeared.
    pub removed: Vec<String>,
    /// Modules rejected (the previous version, if any, stays), with the reason.
    pub rejected: Vec<(String, String)>,
}

/// Size and mtime of a file as last examined, to skip hashing unchanged files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

pub(crate) struct Registry {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    cache: ArtifactCache,
    modules: ArcSwap<ModuleMap>,
    /// Config strings each module is initialised with, from the targets that use it.
    /// Grows when a reloaded chain brings a new config: a replacement must accept it too.
    configs: Mutex<HashMap<String, BTreeSet<Arc<str>>>>,
    /// What each file looked like when last examined (loaded or rejected).
    seen: Mutex<HashMap<String, Stamp>>,
    /// Bumped by every change to the module set: a verdict taken before it may be stale.
    generation: std::sync::atomic::AtomicU64,
}

impl Registry {
    pub fn new(
        runtime: Arc<Runtime>,
        dir: PathBuf,
        cache: ArtifactCache,
        configs: HashMap<String, BTreeSet<Arc<str>>>,
    ) -> Registry {
        Registry {
            runtime,
            dir,
            cache,
            modules: ArcSwap::from_pointee(HashMap::new()),
            configs: Mutex::new(configs),
            seen: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Remember `config` for module `name`: later replacements are checked against it.
    pub fn add_config(&self, name: &str, config: Arc<str>) {
        if let Ok(mut configs) = self.configs.lock() {
            configs.entry(name.to_string()).or_default().insert(config);
        }
    }

    /// How many times the module set has changed.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The current module set (a snapshot; cheap).
    pub fn modules(&self) -> Arc<ModuleMap> {
        self.modules.load_full()
    }

    /// Bring the loaded set in line with the directory.
    pub async fn scan(&self) -> ScanReport {
        let mut report = ScanReport::default();
        let files = match list_wasm(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::error!("cannot read policy directory {}: {e}", self.dir.display());
                return report;
            }
        };
        let current = self.modules();
        for name in current.keys() {
            if !files.contains_key(name) {
                report.removed.push(name.clone());
            }
        }
        for (name, (path, stamp)) in &files {
            let unchanged = self
                .seen
                .lock()
                .map(|s| s.get(name) == Some(stamp))
                .unwrap_or(false);
            if unchanged {
                continue;
            }
            match self.load_file(name, path, current.get(name)).await {
                Ok(Some((module, source))) => {
                    report
                        .loaded
                        .push((name.clone(), module.sha256().to_string(), source));
                    self.swap(|m| {
                        m.insert(name.clone(), module.clone());
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(policy = %name, "rejected {}: {e}", path.display());
                    report.rejected.push((name.clone(), e.to_string()));
                }
            }
            if let Ok(mut seen) = self.seen.lock() {
                seen.insert(name.clone(), *stamp);
            }
        }
        for name in &report.removed {
            tracing::info!(policy = %name, "policy file removed; unloaded");
            self.swap(|m| {
                m.remove(name);
            });
            if let Ok(mut seen) = self.seen.lock() {
                seen.remove(name);
            }
        }
        report
    }

    /// Compile, link and initialise one file. `Ok(None)` when it is the version already loaded.
    async fn load_file(
        &self,
        name: &str,
        path: &Path,
        current: Option<&Arc<PolicyModule>>,
    ) -> Result<Option<(Arc<PolicyModule>, LoadSource)>, PolicyError> {
        let bytes = std::fs::read(path).map_err(|e| PolicyError::Load(e.to_string()))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if current.is_some_and(|m| m.sha256() == sha256) {
            return Ok(None);
        }
        let (module, source) = self.compile(name, &bytes, sha256).await?;
        let configs: Vec<Arc<str>> = self
            .configs
            .lock()
            .map(|c| c.get(name).into_iter().flatten().cloned().collect())
            .unwrap_or_default();
        for config in &configs {
            match module.warm(config).await {
                Ok(()) => {}
                // A replacement must work for every target that uses it, or the old one stays.
                Err(e) if current.is_some() => return Err(e),
                // First load: targets whose config `init` refuses deny every command (each call
                // retries `init` and fails closed); the module still serves the other targets.
                Err(e) => tracing::error!(policy = %name, config = %config, "{e}"),
            }
        }
        tracing::info!(policy = %name, sha256 = %module.sha256(), ?source, "policy loaded");
        Ok(Some((module, source)))
    }

    /// Compile (or fetch from the cache) and link, on a blocking thread: compiling a large
    /// component takes seconds and must not stall the runtime.
    async fn compile(
        &self,
        name: &str,
        bytes: &[u8],
        sha256: String,
    ) -> Result<(Arc<PolicyModule>, LoadSource), PolicyError> {
        let runtime = self.runtime.clone();
        let cache = self.cache.clone();
        let bytes = bytes.to_vec();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let (component, source) = cache.load(&runtime.engine, &bytes, &sha256)?;
            let load_time = started.elapsed();
            let module = PolicyModule::new(runtime, &name, sha256, &component, load_time)?;
            Ok((Arc::new(module), source))
        })
        .await
        .map_err(|e| PolicyError::Load(format!("compile task failed: {e}")))?
    }

    /// Load one file outside any directory scan (`warden policy test`).
    pub async fn load_single(
        &self,
        name: &str,
        path: &Path,
    ) -> Result<Arc<PolicyModule>, PolicyError> {
        match self.load_file(name, path, None).await? {
            Some((module, _)) => {
                self.swap(|m| {
                    m.insert(name.to_string(), module.clone());
                });
                Ok(module)
            }
            None => Err(PolicyError::Load("module already loaded".into())),
        }
    }

    fn swap(&self, change: impl Fn(&mut ModuleMap)) {
        self.modules.rcu(|old| {
            let mut next = ModuleMap::clone(old);
            change(&mut next);
            next
        });
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `*.wasm` regular files directly in `dir`, by module name; hidden files are skipped.
fn list_wasm(dir: &Path) -> std::io::Result<HashMap<String, (PathBuf, Stamp)>> {
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if name.starts_with('.') || path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(meta) if meta.is_file() => meta,
            _ => continue,
        };
        let stamp = Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        files.insert(name.to_string(), (path, stamp));
    }
    Ok(files)
}
