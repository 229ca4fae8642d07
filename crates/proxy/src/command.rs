//! Running a helper program (`nft`, `ip`) with optional standard input and collecting its
//! output: the one place where the proxy and the agent's pod network spawn their tools.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("running {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("{command} failed ({status}): {stderr}")]
    Failed { command: String, status: std::process::ExitStatus, stderr: String },
}

/// Runs `argv` (program first), feeding it `stdin` when given, and returns its standard
/// output; a non-zero exit is an error carrying the start of its standard error.
pub async fn run(argv: &[&str], stdin: Option<&str>) -> Result<String, CommandError> {
    let command = argv.join(" ");
    let spawn_error = |source| CommandError::Spawn { command: command.clone(), source };
    let (program, args) = argv.split_first().ok_or_else(|| spawn_error(std::io::ErrorKind::InvalidInput.into()))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await.map_err(spawn_error)?;
    }
    let output = child.wait_with_output().await.map_err(spawn_error)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // nft echoes the whole failing line of a script; keep the message readable.
        let stderr = stderr.trim().lines().take(6).collect::<Vec<_>>().join("\n");
        return Err(CommandError::Failed { command, status: output.status, stderr });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_input_and_failures() {
        assert_eq!(run(&["cat"], Some("fed in")).await.expect("cat"), "fed in");
        let failed = run(&["sh", "-c", "echo wrong >&2; exit 3"], None).await.expect_err("fails");
        assert!(matches!(&failed, CommandError::Failed { stderr, .. } if stderr == "wrong"), "{failed:?}");
        assert!(matches!(run(&["/nonexistent/tool"], None).await, Err(CommandError::Spawn { .. })));
    }
}
