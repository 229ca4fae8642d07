//! The skiff Kubernetes API server: HTTPS with client-certificate authentication, the
//! generic REST storage over the registry, the watch cache, and discovery.

pub mod admission;
pub mod discovery;
pub mod eviction;
pub mod http;
pub mod listwatch;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod representation;
pub mod request;
pub mod rest;
pub mod server;
pub mod services;
pub mod subresources;
pub mod watchcache;

pub use server::{start, Config, Server};
