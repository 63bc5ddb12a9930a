//! The on-disk cache of compiled policy components, keyed by the module's sha256, so a restart
//! loads modules in milliseconds instead of recompiling them.
//!
//! Trust: a cached artifact is native code. The cache directory must be as protected as the
//! `warden` binary itself (it is created 0700); the gateway only ever loads artifacts it wrote.

use super::error::PolicyError;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled artifacts live; `None` disables caching.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactCache {
    dir: Option<PathBuf>,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Deserialized from the cache.
    Cache,
    /// Compiled now (and written to the cache when there is one).
    Compiled,
}

impl ArtifactCache {
    pub fn new(dir: Option<PathBuf>) -> ArtifactCache {
        if let Some(dir) = &dir
            && let Err(e) = create_private_dir(dir)
        {
            tracing::warn!(
                "policy cache {} unusable, compiling every load: {e}",
                dir.display()
            );
            return ArtifactCache { dir: None };
        }
        ArtifactCache { dir }
    }

    /// The compiled component for `bytes`, from the cache when present and compatible.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Component, LoadSource), PolicyError> {
        let path = self.dir.as_ref().map(|d| d.join(format!("{sha256}.cwasm")));
        if let Some(path) = &path
            && path.exists()
        {
            match deserialize(engine, path) {
                Ok(component) => return Ok((component, LoadSource::Cache)),
                // Another wasmtime version or config wrote it: recompile and overwrite.
                Err(e) => tracing::info!("recompiling {}: {e:#}", path.display()),
            }
        }
        let component =
            Component::new(engine, bytes).map_err(|e| PolicyError::Load(format!("{e:#}")))?;
        if let Some(path) = &path
            && let Err(e) = store(&component, path)
        {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
        Ok((component, LoadSource::Compiled))
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be an artifact produced by
    // `Component::serialize` of a compatible engine (it checks the version and config itself).
    // Only the gateway writes this private (0700) directory, and it writes only its own
    // serialized components, named by the sha256 of the module they were compiled from.
    unsafe { Component::deserialize_file(engine, path) }
}

fn store(component: &Component, path: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    // Write then rename, so a crash never leaves a truncated artifact under the final name.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
