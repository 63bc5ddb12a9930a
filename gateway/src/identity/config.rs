//! `[identity]` in warden.toml, and loading the key files it names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::IdentityError;

/// The shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as long as the
/// hash output (256 bits).
pub(super) const MIN_SECRET_LEN: usize = 32;

/// Clock-skew tolerance above this would quietly extend every token's life.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// `[identity]` in warden.toml: who may issue tokens for this gateway, and with which keys.
///
/// ```toml
/// [identity]
/// issuer = "https://idp.example.com"
/// audience = "warden"
/// leeway = "30s"
/// jwks_file = "keys/jwks.json"
/// max_ttl = "1h"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud` (a token's `aud` may be a list; it must contain this value).
    pub audience: String,
    /// Clock-skew tolerance for `exp`, `nbf` and `iat`. At most 5 minutes.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// A development HS256 secret: the file's bytes (one trailing newline is ignored), at least
    /// 32 bytes. Checks tokens that carry no `kid`.
    #[serde(default)]
    pub hs256_secret_file: Option<PathBuf>,
    /// RS256 and ES256 (P-256) public keys as a JWKS JSON file. Every signing key needs a unique
    /// `kid`; keys marked `"use": "enc"` are skipped.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// When set, tokens must carry `iat` and live no longer than this (`exp - iat`).
    #[serde(default, with = "humantime_serde")]
    pub max_ttl: Option<Duration>,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

impl IdentityConfig {
    /// Resolve relative key-file paths against `dir` (the directory of the config file), so
    /// the gateway finds its keys whatever its working directory.
    pub fn resolve_relative_to(&mut self, dir: &Path) {
        for path in [&mut self.hs256_secret_file, &mut self.jwks_file]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }

    /// Check what can be checked without reading files.
    pub fn validate(&self) -> Result<(), IdentityError> {
        if self.issuer.is_empty() {
            return Err(IdentityError::InvalidConfig("issuer is empty".into()));
        }
        if self.audience.is_empty() {
            return Err(IdentityError::InvalidConfig("audience is empty".into()));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(IdentityError::InvalidConfig(format!(
                "leeway {} exceeds the maximum of {}",
                humantime::format_duration(self.leeway),
                humantime::format_duration(MAX_LEEWAY)
            )));
        }
        if self.max_ttl.is_some_and(|ttl| ttl.as_secs() == 0) {
            return Err(IdentityError::InvalidConfig(
                "max_ttl must be at least one second".into(),
            ));
        }
        if self.hs256_secret_file.is_none() && self.jwks_file.is_none() {
            return Err(IdentityError::NoKeySource);
        }
        Ok(())
    }
}

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|source| IdentityError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// Read the HS256 secret. One trailing newline is dropped because `echo` and editors add it
/// and other tools (Docker secrets, `jwt` CLIs) commonly strip it too.
pub(super) fn load_hs256_secret(path: &Path) -> Result<Vec<u8>, IdentityError> {
    let mut secret = read_file(path)?;
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    if secret.len() < MIN_SECRET_LEN {
        return Err(IdentityError::WeakSecret { len: secret.len() });
    }
    Ok(secret)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<IdentityConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults_and_durations() {
        let config = parse(
            r#"issuer = "iss"
audience = "aud"
hs256_secret_file = "secret"
max_ttl = "1h""#,
        )
        .unwrap();
        assert_eq!(config.leeway, Duration::from_secs(30));
        assert_eq!(config.max_ttl, Some(Duration::from_secs(3600)));
        assert_eq!(config.jwks_file, None);
        config.validate().unwrap();

        let config =
            parse("issuer = \"i\"\naudience = \"a\"\njwks_file = \"k\"\nleeway = \"2s\"").unwrap();
        assert_eq!(config.leeway, Duration::from_secs(2));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = parse("issuer = \"i\"\naudience = \"a\"\nsecret = \"oops\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn a_key_source_is_required() {
        let config = parse("issuer = \"i\"\naudience = \"a\"").unwrap();
        assert!(matches!(config.validate(), Err(IdentityError::NoKeySource)));
    }

    #[test]
    fn bad_settings_are_refused() {
        let base = "audience = \"a\"\njwks_file = \"k\"\n";
        let config = parse(&format!("issuer = \"\"\n{base}")).unwrap();
        assert!(matches!(
            config.validate(),
            Err(IdentityError::InvalidConfig(_))
        ));
        let config = parse(&format!("issuer = \"i\"\nleeway = \"1h\"\n{base}")).unwrap();
        assert!(matches!(
            config.validate(),
            Err(IdentityError::InvalidConfig(_))
        ));
    }

    #[test]
    fn relative_paths_resolve_against_the_config_dir() {
        let mut config = parse(
            "issuer = \"i\"\naudience = \"a\"\nhs256_secret_file = \"s\"\njwks_file = \"/abs/k\"",
        )
        .unwrap();
        config.resolve_relative_to(Path::new("/etc/warden"));
        assert_eq!(
            config.hs256_secret_file,
            Some(PathBuf::from("/etc/warden/s"))
        );
        assert_eq!(config.jwks_file, Some(PathBuf::from("/abs/k")));
    }

    #[test]
    fn secret_length_and_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(load_hs256_secret(&path).unwrap().len(), 32);
        std::fs::write(&path, "0123456789abcdef0123456789abcde\r\n").unwrap();
        assert!(matches!(
            load_hs256_secret(&path),
            Err(IdentityError::WeakSecret { len: 31 })
        ));
        let missing = dir.path().join("missing");
        assert!(matches!(
            load_hs256_secret(&missing),
            Err(IdentityError::ReadFile { .. })
        ));
    }
}
