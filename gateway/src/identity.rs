//! JWT verification: tokens become a [`Principal`] with its delegation chain.

use serde::Deserialize;

/// `[identity]` in warden.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Required `aud`.
    pub audience: String,
}
