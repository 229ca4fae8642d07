//! Kubernetes API machinery for skiff, with no I/O: the resource registry, per-kind
//! strategies (defaulting, validation), label and field selectors, and the `Status`
//! errors every failure maps to.

pub mod apply;
pub mod builtins;
pub mod conversion;
pub mod error;
mod kinds;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod selector;
pub mod strategy;
pub mod table;
pub mod validation;

pub use error::{ApiError, ApiResult, FieldError, Target};
pub use kinds::Quantity;
pub use registry::{NameRule, Registry, ResourceDef, Subresources};
