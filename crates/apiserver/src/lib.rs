//! The skiff Kubernetes API server: HTTPS with client-certificate and join-token
//! authentication, the generic REST storage over the registry, the watch cache,
//! discovery, and the subresources proxied to node agents (logs, exec, port-forward).

pub mod admission;
pub mod discovery;
pub mod eviction;
pub mod http;
pub mod listwatch;
pub mod meta;
pub mod nodeproxy;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod representation;
pub mod request;
pub mod rest;
pub mod server;
pub mod services;
pub mod servingcert;
pub mod sparse;
pub mod subresources;
pub mod token;
pub mod watchcache;

pub use server::{start, Config, Server};
