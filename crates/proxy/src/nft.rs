//! Running `nft -f -`: the one way the proxy changes the kernel's rules. Each script is
//! one transaction: it applies entirely or not at all.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("nft failed ({status}): {stderr}")]
    Failed { status: std::process::ExitStatus, stderr: String },
    /// A partial sync sent over netlink (crate::netlink) failed.
    #[error(transparent)]
    Netlink(#[from] crate::netlink::NetlinkError),
}

/// How to run nft: the plain binary, or a command prefix such as
/// `ip netns exec NS nft` (tests and benchmarks program a namespace of their own).
#[derive(Clone, Debug)]
pub struct Nft {
    argv: Vec<String>,
    namespace: Option<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft { argv: vec!["nft".into()], namespace: None }
    }
}

impl Nft {
    /// nft inside the named network namespace (`ip netns exec NAME nft`).
    pub fn in_namespace(name: &str) -> Self {
        Nft { argv: ["ip", "netns", "exec", name, "nft"].map(String::from).to_vec(), namespace: Some(name.into()) }
    }

    /// The network namespace nft runs in (None: the current one).
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// Applies `script` as one transaction.
    pub async fn apply(&self, script: &str) -> Result<(), NftError> {
        self.run(&["-f", "-"], Some(script)).await.map(drop)
    }

    /// Runs nft with `args` and returns its standard output (e.g. `list table ...`).
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
        let program = self.argv.join(" ");
        let spawn_error = |source| NftError::Spawn { program: program.clone(), source };
        let mut child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
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
            // nft echoes the whole failing line; keep the message readable.
            let stderr: String = stderr.lines().take(6).collect::<Vec<_>>().join("\n");
            return Err(NftError::Failed { status: output.status, stderr });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
