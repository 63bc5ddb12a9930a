//! [`IdentityError`]: why a token, or the identity configuration, was refused.
//!
//! Display strings are safe to send to a client and to log: they never contain the token, a
//! claim value or key material. Configuration errors may name file paths and key ids.

use std::path::PathBuf;

use jsonwebtoken::errors::ErrorKind;

/// Why a token was rejected, or why the identity configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    // --- configuration (start-up) ---
    /// Neither `hs256_secret_file` nor `jwks_file` is set.
    #[error("identity config: no key source; set hs256_secret_file and/or jwks_file")]
    NoKeySource,
    /// Any other unusable setting (empty issuer, leeway too large, ...).
    #[error("identity config: {0}")]
    InvalidConfig(String),
    /// A key file could not be read.
    #[error("identity config: cannot read {}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The HS256 secret is too short to resist brute force.
    #[error("identity config: the hs256 secret is {len} bytes; at least 32 are required")]
    WeakSecret { len: usize },
    /// The JWKS file is not usable.
    #[error("identity config: jwks_file: {0}")]
    InvalidJwks(String),

    // --- token verification ---
    /// Not three base64url parts with a JSON header and payload, or too long.
    #[error("malformed token")]
    Malformed,
    /// `alg` is not HS256, RS256 or ES256 (this includes `none`).
    #[error("unsupported token algorithm")]
    UnsupportedAlgorithm,
    /// The header lists `crit` extensions, none of which this gateway implements.
    #[error("unsupported critical token header")]
    UnsupportedCritical,
    /// No `kid`, and no HS256 secret is configured to check a token without one.
    #[error("token has no key id")]
    MissingKeyId,
    /// `kid` names no key of the JWKS.
    #[error("unknown key id")]
    UnknownKeyId,
    /// The header's `alg` is not the algorithm of the key its `kid` selects.
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` (plus leeway) is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` or `iat` (minus leeway) is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is absent.
    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an unusable value.
    #[error("invalid {0} claim")]
    InvalidClaim(&'static str),
    /// `exp - iat` exceeds `max_ttl`.
    #[error("token lifetime exceeds the allowed maximum")]
    LifetimeTooLong,
    /// The nested `act` claim is deeper than [`super::MAX_ACT_DEPTH`].
    #[error("delegation chain too deep")]
    ChainTooDeep,
    /// The key could not be used (for example an RSA key the backend refuses).
    #[error("token could not be verified")]
    VerificationFailed,

    // --- minting (development) ---
    /// The mint request or configuration cannot produce a token.
    #[error("cannot mint token: {0}")]
    Mint(String),
}

/// The fixed claim names jsonwebtoken reports, as `'static` strings so that a hostile token
/// cannot smuggle text into an error message.
fn claim_name(name: &str) -> &'static str {
    match name {
        "exp" => "exp",
        "nbf" => "nbf",
        "iss" => "iss",
        "aud" => "aud",
        "sub" => "sub",
        _ => "required",
    }
}

impl From<jsonwebtoken::errors::Error> for IdentityError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        match err.kind() {
            ErrorKind::InvalidToken
            | ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_) => Self::Malformed,
            ErrorKind::InvalidSignature => Self::BadSignature,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::WrongIssuer,
            ErrorKind::InvalidAudience => Self::WrongAudience,
            ErrorKind::MissingRequiredClaim(name) => Self::MissingClaim(claim_name(name)),
            ErrorKind::InvalidClaimFormat(name) => Self::InvalidClaim(claim_name(name)),
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Self::AlgorithmMismatch,
            ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
                Self::UnsupportedAlgorithm
            }
            // Key-format and provider errors: the key, not the token, is at fault; say little.
            _ => Self::VerificationFailed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_are_not_echoed() {
        let err: IdentityError =
            jsonwebtoken::errors::Error::from(ErrorKind::MissingRequiredClaim("<script>".into()))
                .into();
        assert_eq!(err.to_string(), "token lacks the required claim");
        let err: IdentityError =
            jsonwebtoken::errors::Error::from(ErrorKind::MissingRequiredClaim("exp".into())).into();
        assert_eq!(err.to_string(), "token lacks the exp claim");
    }
}
