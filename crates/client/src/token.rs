//! Join tokens, in k3s' form: `K10<CA hash>::server:<secret>`.
//!
//! The CA hash is the SHA-256 (lower-case hex) of the cluster CA certificate exactly as
//! the API server serves it at `GET /cacerts` (PEM text). An agent holding the token
//! fetches `/cacerts` without verifying the server, checks the hash, and only then trusts
//! that CA and sends the secret as a bearer token: a server that is not the cluster's
//! never sees the secret.

use std::fmt;

/// The prefix of a full token (k3s' token format version 1).
const PREFIX: &str = "K10";
/// The only user a join token names today.
const USER: &str = "server";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the join token is not of the form K10<sha256 of the CA>::server:<secret>")]
    Malformed,
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the CA certificate PEM, lower-case hex.
    pub ca_hash: String,
    /// The shared secret the API server accepts as a bearer token.
    pub secret: String,
}

/// The SHA-256 of `ca_pem`, lower-case hex: the hash a token pins.
pub fn ca_hash(ca_pem: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, ca_pem).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl JoinToken {
    /// A token for the cluster whose CA certificate is `ca_pem`.
    pub fn new(ca_pem: &[u8], secret: impl Into<String>) -> Self {
        JoinToken { ca_hash: ca_hash(ca_pem), secret: secret.into() }
    }

    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let rest = text.trim().strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let (hash, credentials) = rest.split_once("::").ok_or(TokenError::Malformed)?;
        let (user, secret) = credentials.split_once(':').ok_or(TokenError::Malformed)?;
        let hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex || user != USER || secret.is_empty() {
            return Err(TokenError::Malformed);
        }
        Ok(JoinToken { ca_hash: hash.to_ascii_lowercase(), secret: secret.to_string() })
    }

    /// Whether `ca_pem` is the CA this token pins.
    pub fn matches_ca(&self, ca_pem: &[u8]) -> bool {
        ca_hash(ca_pem) == self.ca_hash
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}::{USER}:{}", self.ca_hash, self.secret)
    }
}

/// Never prints the secret.
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken").field("ca_hash", &self.ca_hash).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pins_the_ca() {
        let token = JoinToken::new(b"-----BEGIN CERTIFICATE-----\n", "s3cret");
        let text = token.to_string();
        assert!(text.starts_with("K10") && text.ends_with("::server:s3cret"), "{text}");
        assert_eq!(text.len(), 3 + 64 + "::server:s3cret".len());
        let parsed = JoinToken::parse(&text).unwrap();
        assert_eq!(parsed, token);
        assert!(parsed.matches_ca(b"-----BEGIN CERTIFICATE-----\n"));
        assert!(!parsed.matches_ca(b"another CA"));
        assert!(!format!("{parsed:?}").contains("s3cret"));
    }

    #[test]
    fn rejects_other_forms() {
        let hash = "a".repeat(64);
        for bad in [
            "s3cret".to_string(),
            format!("K10{hash}:server:x"),
            format!("K10{hash}::node:x"),
            format!("K10{hash}::server:"),
            format!("K10{}::server:x", "g".repeat(64)),
            format!("K10{}::server:x", "a".repeat(63)),
        ] {
            assert_eq!(JoinToken::parse(&bad), Err(TokenError::Malformed), "{bad}");
        }
    }
}
