//! What the scheduler keeps of pods and nodes: only the fields placement needs, parsed
//! once (quantities to integers, selectors compiled) when a watch event arrives, so that
//! a scheduling cycle never touches JSON or strings it does not compare.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, PodCondition, PodSpec, WeightedPodAffinityTerm};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::objects::SchedPod;

use crate::resources::{pod_requests, PodRequests, Resources};
use crate::selector::{LabelSelector, Labels, NodeTerm, NodeTerms};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "NoSchedule" => Some(TaintEffect::NoSchedule),
            "PreferNoSchedule" => Some(TaintEffect::PreferNoSchedule),
            "NoExecute" => Some(TaintEffect::NoExecute),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toleration {
    /// Empty: any key (only with Exists).
    pub key: String,
    pub exists: bool,
    pub value: String,
    /// None: any effect.
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    /// Kubernetes' `Toleration.ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        self.effect.is_none_or(|e| e == taint.effect)
            && (self.key.is_empty() || self.key == taint.key)
            && (self.exists || self.value == taint.value)
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

/// A host port a pod's container binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports conflict on the same protocol and port when their IPs overlap
    /// (0.0.0.0 overlaps every address).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod (anti-)affinity term, compiled: which pods it selects and over which topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffinityTerm {
    pub namespaces: Vec<String>,
    /// Selects namespaces by their labels; an empty selector selects all namespaces.
    pub namespace_selector: Option<LabelSelector>,
    pub selector: LabelSelector,
    pub topology_key: String,
    pub weight: i32,
}

impl AffinityTerm {
    fn from_api(term: &PodAffinityTerm, weight: i32, pod_namespace: &str, pod_labels: &Labels) -> Self {
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.push(pod_namespace.to_string());
        }
        // matchLabelKeys / mismatchLabelKeys: the incoming pod's own values join the selector.
        let mut selector = LabelSelector::from_api_lossy(term.label_selector.as_ref());
        if term.label_selector.is_some() {
            let pick = |keys: &Option<Vec<String>>| -> Vec<(String, String)> {
                keys.iter().flatten().filter_map(|k| pod_labels.get(k).map(|v| (k.clone(), v.clone()))).collect()
            };
            selector = selector.with_exact(pick(&term.match_label_keys)).without(pick(&term.mismatch_label_keys));
        }
        AffinityTerm {
            namespaces,
            namespace_selector: term.namespace_selector.as_ref().map(|s| LabelSelector::from_api_lossy(Some(s))),
            selector,
            topology_key: term.topology_key.clone(),
            weight,
        }
    }

    /// Whether the term selects `pod`; `namespace_labels` looks up a namespace's labels.
    pub fn matches<'a>(&self, pod: &PodInfo, namespace_labels: impl Fn(&str) -> Option<&'a Labels>) -> bool {
        let in_namespace = self.namespaces.contains(&pod.namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| namespace_labels(&pod.namespace).is_some_and(|labels| s.matches(labels)));
        in_namespace && self.selector.matches(&pod.labels)
    }
}

/// A pod's inter-pod affinity, all four kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodAffinity {
    pub required: Vec<AffinityTerm>,
    pub required_anti: Vec<AffinityTerm>,
    pub preferred: Vec<AffinityTerm>,
    pub preferred_anti: Vec<AffinityTerm>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsatisfiable {
    DoNotSchedule,
    ScheduleAnyway,
}

/// A topology spread constraint, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    pub when_unsatisfiable: Unsatisfiable,
    pub selector: LabelSelector,
    pub min_domains: i32,
    /// nodeAffinityPolicy Honor (the default): only nodes matching the pod's node
    /// affinity/selector count as domains.
    pub honor_node_affinity: bool,
    /// nodeTaintsPolicy Honor (default Ignore): only nodes whose taints the pod tolerates count.
    pub honor_node_taints: bool,
}

/// The condition PodScheduled as last seen on a pod, for writing the next one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduledCondition {
    /// Its index in status.conditions (a JSON patch replaces it there).
    pub index: usize,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// What the scheduler keeps of a pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub resource_version: String,
    pub labels: Labels,
    /// spec.nodeName: set once bound.
    pub node_name: String,
    pub scheduler_name: String,
    pub priority: i32,
    /// preemptionPolicy Never: the pod waits rather than evict others.
    pub preempt_never: bool,
    /// status.nominatedNodeName: where a preemption made room for it.
    pub nominated_node: String,
    /// The uid of its controller (ownerReference with controller: true), for the
    /// default spreading constraints.
    pub controller_uid: Option<String>,
    /// status.startTime in seconds (preemption spares longer-running pods first).
    pub start_time: Option<i64>,
    pub terminating: bool,
    /// Pods with scheduling gates wait.
    pub gated: bool,
    pub requests: PodRequests,
    pub tolerations: Vec<Toleration>,
    pub node_selector: Labels,
    pub required_node_affinity: Option<NodeTerms>,
    pub preferred_node_affinity: Vec<(i32, NodeTerm)>,
    pub host_ports: Vec<HostPort>,
    pub affinity: Option<Box<PodAffinity>>,
    pub spread: Vec<SpreadConstraint>,
    /// Container images, normalized (`nginx` → `nginx:latest`).
    pub images: Vec<String>,
    pub scheduled_condition: Option<ScheduledCondition>,
    pub conditions_len: usize,
    /// A hash of what may change a scheduling decision (labels and spec), to tell a
    /// status-only update from one that deserves another attempt.
    pub fingerprint: u64,
}

/// An image name as the scheduler compares them: a tag is added when there is none.
pub fn normalize_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

fn fingerprint(meta: &ObjectMeta, spec: Option<&PodSpec>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.labels.hash(&mut hasher);
    serde_json::to_string(&spec).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

impl PodInfo {
    /// A reference to the pod, for events.
    pub fn reference(&self) -> k8s_openapi::api::core::v1::ObjectReference {
        k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            resource_version: Some(self.resource_version.clone()).filter(|rv| !rv.is_empty()),
            field_path: None,
        }
    }
    pub fn from_pod(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let mut info = Self::from_parts(&pod.metadata, pod.spec.as_ref(), status.and_then(|s| s.conditions.as_deref()));
        info.nominated_node = status.and_then(|s| s.nominated_node_name.clone()).unwrap_or_default();
        info.start_time = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0.as_second());
        info
    }

    /// From a pod decoded for the scheduler's watch.
    pub fn from_sched_pod(pod: &SchedPod) -> Self {
        let status = pod.status.as_ref();
        let mut info = Self::from_parts(&pod.metadata, pod.spec.as_ref(), status.and_then(|s| s.conditions.as_deref()));
        info.nominated_node = status.and_then(|s| s.nominated_node_name.clone()).unwrap_or_default();
        info.start_time = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0.as_second());
        info
    }

    pub fn from_parts(meta: &ObjectMeta, spec: Option<&PodSpec>, conditions: Option<&[PodCondition]>) -> Self {
        let fingerprint_of = || fingerprint(meta, spec);
        let empty = PodSpec::default();
        let spec = spec.unwrap_or(&empty);
        let namespace = meta.namespace.clone().unwrap_or_default();
        let labels = meta.labels.clone().unwrap_or_default();
        let tolerations = spec
            .tolerations
            .iter()
            .flatten()
            .map(|t| Toleration {
                key: t.key.clone().unwrap_or_default(),
                exists: t.operator.as_deref() == Some("Exists"),
                value: t.value.clone().unwrap_or_default(),
                effect: t.effect.as_deref().and_then(TaintEffect::parse),
            })
            .collect();
        let node_affinity = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref());
        let required_node_affinity = node_affinity
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            // An invalid selector matches no node, so the pod waits rather than lands anywhere.
            .map(|s| NodeTerms::from_api(&s.node_selector_terms).unwrap_or(NodeTerms(Vec::new())));
        let preferred_node_affinity = node_affinity
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| NodeTerm::from_api(&p.preference).ok().map(|t| (p.weight, t)))
            .collect();
        let host_ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into()),
                port: p.host_port.unwrap_or_default(),
            })
            .collect();
        let affinity = spec.affinity.as_ref().and_then(|a| {
            let terms = |list: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
                list.into_iter().flatten().map(|t| AffinityTerm::from_api(t, 1, &namespace, &labels)).collect()
            };
            let weighted = |list: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<AffinityTerm> {
                list.into_iter()
                    .flatten()
                    .map(|t| AffinityTerm::from_api(&t.pod_affinity_term, t.weight, &namespace, &labels))
                    .collect()
            };
            let affinity = a.pod_affinity.as_ref();
            let anti = a.pod_anti_affinity.as_ref();
            let compiled = PodAffinity {
                required: terms(affinity.and_then(|p| p.required_during_scheduling_ignored_during_execution.as_ref())),
                required_anti: terms(anti.and_then(|p| p.required_during_scheduling_ignored_during_execution.as_ref())),
                preferred: weighted(
                    affinity.and_then(|p| p.preferred_during_scheduling_ignored_during_execution.as_ref()),
                ),
                preferred_anti: weighted(
                    anti.and_then(|p| p.preferred_during_scheduling_ignored_during_execution.as_ref()),
                ),
            };
            (compiled != PodAffinity::default()).then(|| Box::new(compiled))
        });
        let spread = spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .map(|c| {
                let mut selector = LabelSelector::from_api_lossy(c.label_selector.as_ref());
                if c.label_selector.is_some() {
                    let pairs: Vec<_> = c
                        .match_label_keys
                        .iter()
                        .flatten()
                        .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
                        .collect();
                    selector = selector.with_exact(pairs);
                }
                SpreadConstraint {
                    max_skew: c.max_skew,
                    topology_key: c.topology_key.clone(),
                    when_unsatisfiable: if c.when_unsatisfiable == "ScheduleAnyway" {
                        Unsatisfiable::ScheduleAnyway
                    } else {
                        Unsatisfiable::DoNotSchedule
                    },
                    selector,
                    min_domains: c.min_domains.unwrap_or(1).max(1),
                    honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                }
            })
            .collect();
        let images = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter_map(|c| c.image.as_deref())
            .map(normalize_image)
            .collect();
        let scheduled_condition = conditions.and_then(|list| {
            list.iter().position(|c| c.type_ == "PodScheduled").map(|index| {
                let c = &list[index];
                ScheduledCondition {
                    index,
                    status: c.status.clone(),
                    reason: c.reason.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                }
            })
        });
        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().unwrap_or_default(),
            scheduler_name: spec.scheduler_name.clone().unwrap_or_else(|| "default-scheduler".into()),
            priority: spec.priority.unwrap_or(0),
            preempt_never: spec.preemption_policy.as_deref() == Some("Never"),
            nominated_node: String::new(),
            controller_uid: meta
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.controller == Some(true))
                .map(|r| r.uid.clone()),
            start_time: None,
            terminating: meta.deletion_timestamp.is_some(),
            gated: spec.scheduling_gates.as_ref().is_some_and(|g| !g.is_empty()),
            requests: pod_requests(spec),
            tolerations,
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_affinity,
            preferred_node_affinity,
            host_ports,
            affinity,
            spread,
            images,
            scheduled_condition,
            conditions_len: conditions.map_or(0, <[PodCondition]>::len),
            // Only pending pods are compared: bound ones do not wait in the queue.
            fingerprint: if spec.node_name.as_deref().unwrap_or_default().is_empty() { fingerprint_of() } else { 0 },
            namespace,
            labels,
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the pod's node selector and required node affinity accept a node.
    pub fn node_affinity_matches(&self, node: &NodeInfo) -> bool {
        self.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v))
            && self.required_node_affinity.as_ref().is_none_or(|terms| terms.matches(&node.labels, &node.name))
    }
}

/// A PodDisruptionBudget as preemption reads it: which pods it guards and how many of
/// them may still go (status.disruptionsAllowed).
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub namespace: String,
    /// None: the budget selects no pod (no selector, or an empty one).
    pub selector: Option<LabelSelector>,
    pub disruptions_allowed: i32,
}

impl Budget {
    pub fn from_pdb(pdb: &PodDisruptionBudget) -> Self {
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| {
            s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                || s.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
        });
        Budget {
            namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
            selector: selector.map(|s| LabelSelector::from_api_lossy(Some(s))),
            disruptions_allowed: pdb.status.as_ref().map_or(0, |s| s.disruptions_allowed),
        }
    }

    pub fn guards(&self, pod: &PodInfo) -> bool {
        self.namespace == pod.namespace && self.selector.as_ref().is_some_and(|s| s.matches(&pod.labels))
    }
}

/// What the scheduler keeps of a node's object (its spec and status); what pods use of it
/// lives in the cache.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    /// Images present on the node (normalized names) with their sizes in bytes.
    pub images: BTreeMap<String, i64>,
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let taints = spec
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some(Taint {
                    key: t.key.clone(),
                    value: t.value.clone().unwrap_or_default(),
                    effect: TaintEffect::parse(&t.effect)?,
                })
            })
            .collect();
        let mut images = BTreeMap::new();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                images.insert(normalize_image(name), image.size_bytes.unwrap_or(0));
            }
        }
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints,
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            allocatable: status.and_then(|s| s.allocatable.as_ref()).map(Resources::from_list).unwrap_or_default(),
            images,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tolerations_follow_kubernetes_rules() {
        let taint = Taint { key: "dedicated".into(), value: "gpu".into(), effect: TaintEffect::NoSchedule };
        let tol = |key: &str, exists: bool, value: &str, effect: Option<TaintEffect>| Toleration {
            key: key.into(),
            exists,
            value: value.into(),
            effect,
        };
        assert!(tol("dedicated", false, "gpu", Some(TaintEffect::NoSchedule)).tolerates(&taint));
        assert!(tol("dedicated", true, "", None).tolerates(&taint));
        assert!(tol("", true, "", None).tolerates(&taint), "empty key with Exists tolerates everything");
        assert!(!tol("dedicated", false, "cpu", None).tolerates(&taint));
        assert!(!tol("dedicated", true, "", Some(TaintEffect::NoExecute)).tolerates(&taint));
    }

    #[test]
    fn pod_info_from_a_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"}},
            "spec": {
                "priority": 10,
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
                "containers": [{"name": "c", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}],
                                "resources": {"requests": {"cpu": "250m"}}}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
                ]}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                                               "labelSelector": {"matchLabels": {"app": "web"}}}]
            },
            "status": {"conditions": [{"type": "Ready", "status": "False"},
                                      {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "m"}]}
        }))
        .unwrap();
        let info = PodInfo::from_pod(&pod);
        assert_eq!(info.key(), "ns/p");
        assert_eq!(info.priority, 10);
        assert_eq!(info.requests.requests.milli_cpu, 250);
        assert_eq!(info.host_ports, vec![HostPort { protocol: "TCP".into(), ip: "0.0.0.0".into(), port: 8080 }]);
        assert_eq!(info.images, vec!["nginx:latest".to_string()]);
        let anti = &info.affinity.as_ref().unwrap().required_anti[0];
        assert_eq!(anti.namespaces, vec!["ns".to_string()], "defaults to the pod's namespace");
        assert!(anti.matches(&info, |_| None));
        assert_eq!(info.spread[0].when_unsatisfiable, Unsatisfiable::DoNotSchedule);
        assert!(info.spread[0].honor_node_affinity && !info.spread[0].honor_node_taints);
        let condition = info.scheduled_condition.unwrap();
        assert_eq!((condition.index, condition.reason.as_str()), (1, "Unschedulable"));
        assert_eq!(info.conditions_len, 2);
    }

    #[test]
    fn fingerprint_ignores_status() {
        let mut pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": []}})).unwrap();
        let before = PodInfo::from_pod(&pod).fingerprint;
        pod.status = Some(Default::default());
        assert_eq!(PodInfo::from_pod(&pod).fingerprint, before);
        pod.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert_ne!(PodInfo::from_pod(&pod).fingerprint, before);
    }

    #[test]
    fn image_names() {
        assert_eq!(normalize_image("nginx"), "nginx:latest");
        assert_eq!(normalize_image("nginx:1.25"), "nginx:1.25");
        assert_eq!(normalize_image("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalize_image("app@sha256:abc"), "app@sha256:abc");
    }

    #[test]
    fn node_info_from_a_node() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"zone": "a"}},
            "spec": {"unschedulable": true, "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "images": [{"names": ["docker.io/library/nginx:1.25", "nginx:1.25"], "sizeBytes": 1000}]}
        }))
        .unwrap();
        let info = NodeInfo::from_node(&node);
        assert!(info.unschedulable);
        assert_eq!(info.allocatable.milli_cpu, 4000);
        assert_eq!(info.taints[0].effect, TaintEffect::NoSchedule);
        assert_eq!(info.images.get("nginx:1.25"), Some(&1000));
    }
}
