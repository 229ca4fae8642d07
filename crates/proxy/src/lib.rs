//! skiff-proxy: the service proxy every real node runs, in the manner of kube-proxy's
//! nftables mode. It follows Services, EndpointSlices and its Node through kube-runtime
//! reflectors and programs `table ip skiff-proxy` with `nft`, one atomic transaction per
//! sync, rewriting only what changed.
//!
//! Data flows one way through the modules:
//! [`watch`] (API caches, change notification) → [`model`] (what each service port needs,
//! pure) → [`ruleset`] (chains, sets and map elements, pure) → [`transaction`] (full or
//! partial nft script, pure) → [`nft`] (runs `nft -f -`), or [`netlink`] for partial syncs
//! that change map elements only; [`sync`] ties the last ones together and remembers what
//! the kernel holds. The table layout is described in
//! docs/adr/0015-service-proxy-nftables.md.

pub mod command;
pub mod model;
pub mod netlink;
pub mod nft;
pub mod ruleset;
pub mod sync;
pub mod transaction;
pub mod watch;

pub use model::{Ipv4Cidr, Model, NodeInfo};
pub use nft::{Nft, NftError};
pub use ruleset::{RenderOptions, Ruleset};
pub use sync::{SyncKind, Syncer};
pub use watch::{run, ProxyConfig};
