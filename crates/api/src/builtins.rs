//! The built-in resources skiff serves, as registry data.

use std::sync::Arc;

use k8s_openapi::api::{
    apps::v1 as apps, authentication::v1 as authentication, autoscaling::v2 as autoscaling, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery, events::v1 as events,
    networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
    storage::v1 as storage,
};

use crate::conversion;
use crate::registry::{NameRule, Registry, ResourceDef, StoredAs, Subresources, ALL_VERBS};
use crate::strategy::{KindRules, TypedStrategy};

const STATUS: Subresources = Subresources { status: true, scale: false, binding: false, eviction: false };
const STATUS_SCALE: Subresources = Subresources { status: true, scale: true, binding: false, eviction: false };
const NONE: Subresources = Subresources { status: false, scale: false, binding: false, eviction: false };

/// A built-in resource with the common defaults; callers adjust the rest.
fn def<T: KindRules + schemars::JsonSchema>(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    subresources: Subresources,
) -> ResourceDef {
    let singular: &'static str = Box::leak(kind.to_ascii_lowercase().into_boxed_str());
    ResourceDef {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        short_names,
        categories: &[],
        namespaced,
        subresources,
        name_rule: NameRule::DnsSubdomain,
        tracks_generation: false,
        allow_unconditional_update: true,
        verbs: ALL_VERBS,
        ephemeral: false,
        stored_as: None,
        strategy: Arc::new(TypedStrategy::<T>::default()),
    }
}

/// A review: created to ask a question, answered in the response, never stored.
fn review(mut d: ResourceDef) -> ResourceDef {
    d.verbs = &["create"];
    d.ephemeral = true;
    d
}

/// events.k8s.io Events are core/v1 Events in storage, as in Kubernetes.
fn stored_as_core_events(mut d: ResourceDef) -> ResourceDef {
    d.stored_as = Some(StoredAs {
        group: "",
        plural: "events",
        to_storage: conversion::events_to_core,
        from_storage: conversion::core_to_events,
    });
    d
}

/// Workload kinds keep metadata.generation and belong to `kubectl get all`.
fn workload(mut d: ResourceDef) -> ResourceDef {
    d.tracks_generation = true;
    d.categories = &["all"];
    d
}

fn named(mut d: ResourceDef, rule: NameRule) -> ResourceDef {
    d.name_rule = rule;
    d
}

fn in_all(mut d: ResourceDef) -> ResourceDef {
    d.categories = &["all"];
    d
}

fn generational(mut d: ResourceDef) -> ResourceDef {
    d.tracks_generation = true;
    d
}

pub fn builtin_resources() -> Vec<ResourceDef> {
    let pods = {
        let mut d = in_all(def::<core::Pod>("", "Pod", "pods", &["po"], true, STATUS));
        d.subresources.binding = true;
        d.subresources.eviction = true;
        d
    };
    vec![
        named(def::<core::Namespace>("", "Namespace", "namespaces", &["ns"], false, STATUS), NameRule::DnsLabel),
        pods,
        named(in_all(def::<core::Service>("", "Service", "services", &["svc"], true, STATUS)), NameRule::Dns1035Label),
        def::<core::Endpoints>("", "Endpoints", "endpoints", &["ep"], true, NONE),
        def::<core::ConfigMap>("", "ConfigMap", "configmaps", &["cm"], true, NONE),
        def::<core::Secret>("", "Secret", "secrets", &[], true, NONE),
        def::<core::ServiceAccount>("", "ServiceAccount", "serviceaccounts", &["sa"], true, NONE),
        def::<core::Event>("", "Event", "events", &["ev"], true, NONE),
        def::<core::Node>("", "Node", "nodes", &["no"], false, STATUS),
        def::<core::PersistentVolume>("", "PersistentVolume", "persistentvolumes", &["pv"], false, STATUS),
        def::<core::PersistentVolumeClaim>(
            "",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            &["pvc"],
            true,
            STATUS,
        ),
        def::<core::LimitRange>("", "LimitRange", "limitranges", &["limits"], true, NONE),
        def::<core::ResourceQuota>("", "ResourceQuota", "resourcequotas", &["quota"], true, STATUS),
        workload(def::<apps::Deployment>("apps", "Deployment", "deployments", &["deploy"], true, STATUS_SCALE)),
        workload(def::<apps::ReplicaSet>("apps", "ReplicaSet", "replicasets", &["rs"], true, STATUS_SCALE)),
        workload(def::<apps::StatefulSet>("apps", "StatefulSet", "statefulsets", &["sts"], true, STATUS_SCALE)),
        workload(def::<apps::DaemonSet>("apps", "DaemonSet", "daemonsets", &["ds"], true, STATUS)),
        def::<apps::ControllerRevision>("apps", "ControllerRevision", "controllerrevisions", &[], true, NONE),
        workload(def::<batch::Job>("batch", "Job", "jobs", &[], true, STATUS)),
        workload(def::<batch::CronJob>("batch", "CronJob", "cronjobs", &["cj"], true, STATUS)),
        {
            let mut d = in_all(def::<autoscaling::HorizontalPodAutoscaler>(
                "autoscaling",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
                &["hpa"],
                true,
                STATUS,
            ));
            d.version = "v2";
            d
        },
        def::<coordination::Lease>("coordination.k8s.io", "Lease", "leases", &[], true, NONE),
        def::<discovery::EndpointSlice>("discovery.k8s.io", "EndpointSlice", "endpointslices", &[], true, NONE),
        stored_as_core_events(def::<events::Event>("events.k8s.io", "Event", "events", &["ev"], true, NONE)),
        generational(def::<policy::PodDisruptionBudget>(
            "policy",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            &["pdb"],
            true,
            STATUS,
        )),
        named(def::<rbac::Role>("rbac.authorization.k8s.io", "Role", "roles", &[], true, NONE), NameRule::PathSegment),
        named(
            def::<rbac::RoleBinding>("rbac.authorization.k8s.io", "RoleBinding", "rolebindings", &[], true, NONE),
            NameRule::PathSegment,
        ),
        named(
            def::<rbac::ClusterRole>("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", &[], false, NONE),
            NameRule::PathSegment,
        ),
        named(
            def::<rbac::ClusterRoleBinding>(
                "rbac.authorization.k8s.io",
                "ClusterRoleBinding",
                "clusterrolebindings",
                &[],
                false,
                NONE,
            ),
            NameRule::PathSegment,
        ),
        def::<storage::StorageClass>("storage.k8s.io", "StorageClass", "storageclasses", &["sc"], false, NONE),
        generational(def::<networking::Ingress>("networking.k8s.io", "Ingress", "ingresses", &["ing"], true, STATUS)),
        def::<networking::IngressClass>("networking.k8s.io", "IngressClass", "ingressclasses", &[], false, NONE),
        generational(def::<networking::NetworkPolicy>(
            "networking.k8s.io",
            "NetworkPolicy",
            "networkpolicies",
            &["netpol"],
            true,
            NONE,
        )),
        def::<scheduling::PriorityClass>("scheduling.k8s.io", "PriorityClass", "priorityclasses", &["pc"], false, NONE),
        review(def::<authentication::SelfSubjectReview>(
            "authentication.k8s.io",
            "SelfSubjectReview",
            "selfsubjectreviews",
            &[],
            false,
            NONE,
        )),
    ]
}

/// A registry holding every built-in resource.
pub fn builtin_registry() -> Registry {
    Registry::new(builtin_resources())
}
