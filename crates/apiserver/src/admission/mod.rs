//! Admission plugins that need the cluster's state (so they live in the API server, not
//! in skiff-api's per-kind defaulting): they run on a create after defaulting and before
//! validation, as kube-apiserver's mutating admission does.

pub mod priority;
