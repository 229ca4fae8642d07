//! The rules of each built-in kind: defaults, validation, field selectors.
//! One module per API group.

mod apps;
mod batch;
mod core;
mod other;
