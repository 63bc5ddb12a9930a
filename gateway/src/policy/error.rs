//! Why a policy call failed. Every variant becomes a deny carrying its cause: the engine fails
//! closed.

use std::time::Duration;

/// A policy that could not give a valid answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// No module of that name is loaded (never was, removed, or failed to compile).
    #[error("policy module `{0}` is not loaded")]
    Missing(String),
    /// The module did not compile or instantiate.
    #[error("policy module failed to load: {0}")]
    Load(String),
    /// The module's `init` returned an error for this config.
    #[error("policy init failed: {0}")]
    Init(String),
    /// The call used more CPU time than its deadline and was interrupted.
    #[error("policy exceeded its {0:?} deadline (CPU time)")]
    Deadline(Duration),
    /// The module tried to grow its memory past the cap.
    #[error("policy exceeded its memory cap of {0} bytes")]
    MemoryCap(u64),
    /// The module trapped (unreachable, stack overflow, out-of-bounds access, ...).
    #[error("policy trapped: {0}")]
    Trap(String),
    /// The module returned something the host refuses (edit out of range, oversized result).
    #[error("policy returned a malformed result: {0}")]
    Malformed(String),
    /// `mask-rows` returned an error: the policy refuses to let this result through.
    #[error("policy refused the result: {0}")]
    Refused(String),
}

impl PolicyError {
    /// A short, stable name of the cause for logs and the audit trail.
    pub fn cause(&self) -> &'static str {
        match self {
            PolicyError::Missing(_) => "missing",
            PolicyError::Load(_) => "load",
            PolicyError::Init(_) => "init",
            PolicyError::Deadline(_) => "deadline",
            PolicyError::MemoryCap(_) => "memory-cap",
            PolicyError::Trap(_) => "trap",
            PolicyError::Malformed(_) => "malformed",
            PolicyError::Refused(_) => "refused",
        }
    }
}
