//! The cluster's join token (`DATA/token`, written at first start, mode 0600) and the
//! bearer authentication it grants: node agents that join with `skiff agent --token`
//! authenticate as a node (group `system:nodes`). The token's form and its CA pin are
//! described in `skiff_client::token`.

use std::path::Path;

use anyhow::{Context, Result};
use skiff_client::token::JoinToken;

use crate::pki::UserInfo;

/// The user a join token authenticates as: the agent's node name is not known from the
/// token alone.
pub const NODE_USER: &str = "system:node:<unknown>";
pub const NODES_GROUP: &str = "system:nodes";

/// Reads `path`, or writes a new token with a random secret for the CA `ca_pem`. A token
/// whose CA pin no longer matches (the CA was replaced) is written again with its secret.
pub fn load_or_create(path: &Path, ca_pem: &str) -> Result<JoinToken> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(JoinToken::parse(&text).with_context(|| format!("reading {}", path.display()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if let Some(token) = &existing {
        if token.matches_ca(ca_pem.as_bytes()) {
            return Ok(token.clone());
        }
    }
    let secret = existing.map(|t| t.secret).unwrap_or_else(|| {
        let bytes: [u8; 16] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    });
    let token = JoinToken::new(ca_pem.as_bytes(), secret);
    crate::pki::write_private(path, &format!("{token}\n"))?;
    Ok(token)
}

/// The identity an `Authorization` header value proves, if it carries the join token's
/// secret (or the whole token) as a bearer token.
pub fn authenticate(token: &JoinToken, authorization: &str) -> Option<UserInfo> {
    let presented = authorization.strip_prefix("Bearer ")?.trim();
    let full = token.to_string();
    let valid = constant_time_eq(presented.as_bytes(), token.secret.as_bytes())
        || constant_time_eq(presented.as_bytes(), full.as_bytes());
    valid.then(|| UserInfo { name: NODE_USER.into(), groups: vec![NODES_GROUP.into(), "system:authenticated".into()] })
}

/// Compares without an early exit, so timing does not reveal how much of a guess is right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let first = load_or_create(&path, "CA one").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create(&path, "CA one").unwrap(), first);
        let rotated = load_or_create(&path, "CA two").unwrap();
        assert_eq!(rotated.secret, first.secret, "the secret survives a new CA");
        assert_ne!(rotated.ca_hash, first.ca_hash);
    }

    #[test]
    fn bearer_secret_or_whole_token() {
        let token = JoinToken::new(b"CA", "abc123");
        let user = authenticate(&token, "Bearer abc123").unwrap();
        assert_eq!(user.groups[0], NODES_GROUP);
        assert!(authenticate(&token, &format!("Bearer {token}")).is_some());
        assert!(authenticate(&token, "Bearer abc124").is_none());
        assert!(authenticate(&token, "Basic abc123").is_none());
    }
}
