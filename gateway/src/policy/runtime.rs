//! The wasmtime side of the engine, in one place: the `Config`, the epoch ticker that drives
//! call deadlines (counted in CPU time, `budget.rs`), the memory cap, and the sandboxed WASI
//! context every policy store gets.
//!
//! Policies run on the async API because the gateway is a tokio program and WASI's sync
//! bindings block on a runtime, which must not happen on a tokio worker.

use super::PolicyConfig;
use super::bindings::PolicyImports;
use super::budget::CallBudget;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView,
    WasiView,
};

/// How often the epoch advances: how often a running call's CPU time is read.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The limits one module's calls run under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Deadline of one `check` or `mask-rows` call.
    pub deadline: Duration,
    /// Deadline of instantiation plus `init` (interpreters start slower than they answer).
    pub init_deadline: Duration,
    /// Cap on the linear memory of one instance, in bytes.
    pub memory_limit: usize,
}

/// The shared wasmtime engine, linker and limits for every policy module.
pub(crate) struct Runtime {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    /// Limits of modules without an override.
    defaults: Limits,
    /// `[policy.modules.NAME]` overrides (an interpreted policy needs more memory).
    overrides: std::collections::BTreeMap<String, Limits>,
    /// Most idle instances kept per module and config.
    pub max_idle: usize,
    ticker: Option<EpochTicker>,
}

impl Runtime {
    pub fn new(config: &PolicyConfig) -> wasmtime::Result<Arc<Runtime>> {
        let mut wasm = wasmtime::Config::new();
        wasm.epoch_interruption(true);
        wasm.wasm_component_model(true);
        // Deep recursion traps instead of exhausting the host's stack.
        wasm.max_wasm_stack(1 << 20);
        wasm.parallel_compilation(true);
        let engine = Engine::new(&wasm)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        super::bindings::Policy::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)?;

        let ticker = EpochTicker::start(engine.clone());
        let bytes = |b: crate::units::ByteSize| usize::try_from(b.0).unwrap_or(usize::MAX);
        let defaults = Limits {
            deadline: config.deadline,
            init_deadline: config.init_deadline,
            memory_limit: bytes(config.memory_limit),
        };
        let overrides = config
            .modules
            .iter()
            .map(|(name, o)| {
                let limits = Limits {
                    deadline: o.deadline.unwrap_or(defaults.deadline),
                    init_deadline: o.init_deadline.unwrap_or(defaults.init_deadline),
                    memory_limit: o.memory_limit.map_or(defaults.memory_limit, bytes),
                };
                (name.clone(), limits)
            })
            .collect();
        Ok(Arc::new(Runtime {
            engine,
            linker,
            defaults,
            overrides,
            max_idle: config.max_idle_instances,
            ticker: Some(ticker),
        }))
    }

    /// The limits of module `name`.
    pub fn limits_for(&self, name: &str) -> Limits {
        self.overrides.get(name).copied().unwrap_or(self.defaults)
    }

    /// A fresh store for one policy instance: empty sandbox, memory cap, no deadline yet.
    pub fn store(&self, policy: Arc<str>, limits: &Limits) -> Store<HostState> {
        let state = HostState {
            wasi: sandbox_wasi(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap: limits.memory_limit,
                used: 0,
                hit: false,
            },
            policy,
            budget: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every tick while the guest runs: stop it once its call is over its CPU budget.
        store.epoch_deadline_callback(|mut store| {
            let go_on = store
                .data_mut()
                .budget
                .as_mut()
                .is_some_and(CallBudget::may_go_on);
            Ok(if go_on {
                UpdateDeadline::Continue(1)
            } else {
                UpdateDeadline::Interrupt
            })
        });
        store
    }

    /// Arm the deadline for the next call on `store`: `deadline` of CPU time from now.
    pub fn arm(&self, store: &mut Store<HostState>, deadline: Duration) {
        store.data_mut().budget = Some(CallBudget::start(deadline, EPOCH_TICK));
        store.set_epoch_deadline(1);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.stop();
        }
    }
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`].
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl EpochTicker {
    fn start(engine: Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("warden-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            });
        match thread {
            Ok(thread) => EpochTicker { stop, thread },
            // Without a ticker no deadline would ever fire: refuse to run policies at all.
            Err(e) => {
                tracing::error!("cannot start the epoch thread: {e}");
                std::process::abort();
            }
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Per-store state: the empty WASI sandbox, the memory limiter, the call's CPU budget, and the
/// policy's name for logs.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    policy: Arc<str>,
    /// The running call's deadline ([`Runtime::arm`]); none before the first call is armed,
    /// which stops any guest code at the first tick.
    budget: Option<CallBudget>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl super::bindings::warden::policy::types::Host for HostState {}

impl PolicyImports for HostState {
    fn log(&mut self, message: String) {
        let message = super::module::truncate(&message, 4096);
        tracing::info!(policy = %self.policy, "{message}");
    }
}

/// The WASI a policy sees: no files, sockets, environment or arguments; a clock frozen at the
/// epoch and randomness that is a fixed byte cycle, so a policy is a pure function of its
/// inputs (and language runtimes that read the clock or seed hashes at start-up still work).
fn sandbox_wasi() -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(Deterministic::new(vec![0x5a, 0xa5, 0x3c, 0xc3]))
        .insecure_random(Deterministic::new(vec![0x42]))
        .insecure_random_seed(0)
        .max_random_size(1 << 16);
    b.build()
}

/// A clock that always says 1970-01-01T00:00:00Z / 0 ns.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Caps the total linear memory of one instance and remembers that the cap was hit, so the
/// resulting trap is reported as a memory-cap deny rather than a generic trap.
pub(crate) struct MemoryLimiter {
    cap: usize,
    used: usize,
    pub hit: bool,
}

impl MemoryLimiter {
    /// Bytes of linear memory the instance has now (linear memory never shrinks).
    pub fn used(&self) -> usize {
        self.used
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.cap {
            self.hit = true;
            // An error (not `Ok(false)`) traps at once: a policy does not get to limp on.
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes reached",
                self.cap
            ));
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
