//! Kinds of the smaller API groups.

use k8s_openapi::api::{
    coordination::v1::Lease, discovery::v1::EndpointSlice, events::v1::Event,
    networking::v1::{Ingress, IngressClass, NetworkPolicy}, policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    scheduling::v1::PriorityClass, storage::v1::StorageClass,
};

use crate::strategy::KindRules;

impl KindRules for Lease {}
impl KindRules for EndpointSlice {}
impl KindRules for Event {}
impl KindRules for Ingress {}
impl KindRules for IngressClass {}
impl KindRules for NetworkPolicy {}
impl KindRules for PodDisruptionBudget {}
impl KindRules for Role {}
impl KindRules for RoleBinding {}
impl KindRules for ClusterRole {}
impl KindRules for ClusterRoleBinding {}
impl KindRules for PriorityClass {}
impl KindRules for StorageClass {}
