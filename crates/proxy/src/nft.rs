//! Running `nft`: how the proxy changes the kernel's rules (except the element-only
//! partial syncs of [`crate::netlink`]), and how the agent installs its masquerade table.
//! Each script given to `nft -f -` is one transaction: it applies entirely or not at all.

use crate::command::{self, CommandError};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(transparent)]
    Command(#[from] CommandError),
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
        let argv: Vec<&str> = self.argv.iter().map(String::as_str).chain(args.iter().copied()).collect();
        Ok(command::run(&argv, stdin).await?)
    }
}
