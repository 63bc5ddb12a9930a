//! Reloading the targets' policy chains while `warden serve` runs: the config file is polled
//! (at `[policy] reload_interval`) and re-read on SIGHUP. Only the `policies` of existing
//! targets change at run time; everything else in the file takes effect at restart, and a
//! reload says so. Nothing changes unless the audit trail first records exactly what changes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::session::Gateway;

/// The config file as last read: its size and mtime, and its TOML with the targets' chains
/// taken out (what a reload cannot apply).
#[derive(Default)]
pub struct Loaded {
    stamp: Option<(u64, Option<std::time::SystemTime>)>,
    rest: Option<toml::Value>,
}

impl Loaded {
    /// Read `path` (before it is loaded, so a change made meanwhile is seen as one).
    pub fn read(path: &Path) -> Loaded {
        Loaded {
            stamp: stamp(path),
            rest: rest_of(path),
        }
    }
}

fn stamp(path: &Path) -> Option<(u64, Option<std::time::SystemTime>)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.len(), m.modified().ok()))
}

/// The file's TOML without `targets.*.policies`.
fn rest_of(path: &Path) -> Option<toml::Value> {
    let mut value = toml::Value::Table(toml::from_str(&std::fs::read_to_string(path).ok()?).ok()?);
    if let Some(targets) = value.get_mut("targets").and_then(toml::Value::as_table_mut) {
        for (_, target) in targets.iter_mut() {
            if let Some(t) = target.as_table_mut() {
                t.remove("policies");
            }
        }
    }
    Some(value)
}

/// Watch `path` until the task is aborted. A changed file is read once it has stayed the same
/// for one poll interval, so a file being written is not read half-way; SIGHUP reads at once.
pub async fn watch(gw: Arc<Gateway>, path: PathBuf, mut loaded: Loaded) {
    let interval = gw.config().policy.reload_interval;
    let mut pending = None;
    let mut modules = gw.engine().generation();
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
        let generation = gw.engine().generation();
        if generation != modules && note_modules(&gw).await {
            modules = generation;
        }
        let now = stamp(&path);
        if !forced {
            if now == loaded.stamp {
                pending = None;
                continue;
            }
            if pending != Some(now) {
                pending = Some(now);
                continue;
            }
        }
        pending = None;
        let rest = rest_of(&path);
        if reload(&gw, &path, loaded.rest.as_ref(), rest.as_ref(), forced).await {
            loaded = Loaded { stamp: now, rest };
        }
    }
}

/// One reload; `false` when it could not be recorded (the next poll tries again).
async fn reload(
    gw: &Gateway,
    path: &Path,
    before: Option<&toml::Value>,
    after: Option<&toml::Value>,
    forced: bool,
) -> bool {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => return refuse(gw, &e.to_string()).await,
    };
    if before != after {
        let message = format!(
            "changes outside the targets' policies ({}) take effect at restart; until then \
             the running settings stay",
            differences(before, after).join(", ")
        );
        if !announce(gw, &message, tracing::Level::WARN).await {
            return false;
        }
    }
    let changed = gw.changed_chains(&config);
    if changed.is_empty() {
        if forced {
            tracing::info!("config re-read on SIGHUP: the policy chains are unchanged");
        }
        return true;
    }
    // Every entry must load and accept its config now: a typo or a config its policy refuses
    // would otherwise turn the target into one that denies everything.
    for (target, chain) in &changed {
        for r in chain.iter() {
            if let Err(e) = gw.engine().ready(r).await {
                return refuse(gw, &format!("target {target}: {}: {e}", r.module)).await;
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
    // Recorded before it applies, configs included (a loosened limit shows as what it became):
    // no command is judged by a chain the trail does not name. Not recorded, not applied.
    let message = format!("policy chains reloaded: {}", lines.join("; "));
    if !announce(gw, &message, tracing::Level::INFO).await {
        return false;
    }
    gw.engine()
        .add_configs(changed.values().flat_map(|chain| chain.iter()));
    gw.set_chains(changed);
    true
}

/// The module set changed (a policy file hot-loaded, replaced or removed): the trail says
/// which code now answers, beside each command event's `module_sha256`. Written within a poll
/// of the change, not before it: a module swap is the policy directory's, not this file's.
async fn note_modules(gw: &Gateway) -> bool {
    let list: Vec<String> = gw
        .engine()
        .loaded()
        .iter()
        .map(|(name, sha)| format!("{name} sha256 {sha}"))
        .collect();
    let message = format!("policy modules now loaded: {}", list.join(", "));
    match gw.record_note("policy-reload", &message).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!("cannot audit a policy reload: {e}");
            false
        }
    }
}

/// A refused reload: logged and audited; the running chains stay.
async fn refuse(gw: &Gateway, why: &str) -> bool {
    let message = format!("refused, the running chains stay: {why}");
    announce(gw, &message, tracing::Level::ERROR).await
}

/// Log `message` (scrubbed and escaped once, for both) and record it as a `config-reload`
/// note; `false` when the trail did not take it.
async fn announce(gw: &Gateway, message: &str, level: tracing::Level) -> bool {
    let shown = crate::session::log_safe(message);
    match level {
        tracing::Level::ERROR => tracing::error!("config reload: {shown}"),
        tracing::Level::WARN => tracing::warn!("config reload: {shown}"),
        _ => tracing::info!("config reload: {shown}"),
    }
    match gw.record_note("config-reload", message).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!("config reload not applied: it cannot be audited ({e}); retrying");
            false
        }
    }
}

/// Which top-level sections (and targets) differ, outside the chains.
fn differences(before: Option<&toml::Value>, after: Option<&toml::Value>) -> Vec<String> {
    let table = |v: Option<&toml::Value>| v.and_then(toml::Value::as_table).cloned();
    let (Some(a), Some(b)) = (table(before), table(after)) else {
        return vec!["the whole file".to_string()];
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut out = Vec::new();
    for key in keys {
        if a.get(key) == b.get(key) {
            continue;
        }
        if key == "targets" {
            let (ta, tb) = (
                a.get(key).and_then(toml::Value::as_table),
                b.get(key).and_then(toml::Value::as_table),
            );
            let names: BTreeSet<&String> =
                ta.iter().chain(tb.iter()).flat_map(|t| t.keys()).collect();
            for name in names {
                let (x, y) = (ta.and_then(|t| t.get(name)), tb.and_then(|t| t.get(name)));
                match (x, y) {
                    (Some(_), None) => out.push(format!("target {name} removed")),
                    (None, Some(_)) => out.push(format!("target {name} added")),
                    (x, y) if x != y => out.push(format!("target {name}")),
                    _ => {}
                }
            }
        } else {
            out.push(format!("[{key}]"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_sections_and_targets_but_not_chains() {
        let v = |s: &str| toml::Value::Table(toml::from_str(s).unwrap());
        let a = v("[admin]\nlisten = \"127.0.0.1:1\"\n[targets.a]\nx = 1\n[targets.b]\nx = 1\n");
        let b = v("[admin]\nlisten = \"127.0.0.1:2\"\n[targets.a]\nx = 2\n[targets.c]\nx = 1\n");
        assert_eq!(
            differences(Some(&a), Some(&b)),
            ["[admin]", "target a", "target b removed", "target c added"]
        );
        assert!(differences(Some(&a), Some(&a)).is_empty());
    }
}
