//! A real node's pod network, flannel host-gw style: the node's pod CIDR comes from the
//! server ([`podcidr`]: register, then wait for node-ipam-controller's assignment), each
//! other node's pod CIDR is routed via that node's InternalIP ([`routes`]), and pod
//! traffic leaving the cluster CIDR is masqueraded in the agent's own nftables table
//! ([`masquerade`]). [`nodeip`] picks the node's address. Everything is programmed with
//! the `ip` and `nft` commands (ADR 0014) in the agent's network namespace.

pub mod masquerade;
pub mod nodeip;
pub mod podcidr;
pub mod routes;

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("running {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("{command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("reading the output of {command}: {message}")]
    Output { command: String, message: String },
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("registering the node: {0}")]
    Register(#[from] Box<crate::Error>),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// Runs `program args…` (feeding `stdin` when given) and returns its stdout.
pub(crate) async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetworkError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| NetworkError::Spawn { command: command.clone(), source })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|source| NetworkError::Spawn { command: command.clone(), source })?;
    }
    let output =
        child.wait_with_output().await.map_err(|source| NetworkError::Spawn { command: command.clone(), source })?;
    if !output.status.success() {
        return Err(NetworkError::Failed {
            command,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs an `ip -json …` query and parses its answer.
pub(crate) async fn ip_json(args: &[&str]) -> Result<serde_json::Value, NetworkError> {
    let mut full = vec!["-json"];
    full.extend_from_slice(args);
    let text = run("ip", &full, None).await?;
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_str(&text)
        .map_err(|e| NetworkError::Output { command: format!("ip {}", full.join(" ")), message: e.to_string() })
}
