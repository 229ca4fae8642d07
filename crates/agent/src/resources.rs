//! A container's resources and security context as CRI's LinuxContainerConfig, by the
//! kubelet's formulas: cpu requests to shares (`milli × 1024 / 1000`, at least 2), cpu
//! limits to a CFS quota over a 100 ms period, the memory limit in bytes, and an
//! oom_score_adj by QoS class. (Where the runtime cannot lower oom_score_adj — a machine
//! without CAP_SYS_RESOURCE, containerd with `restrict_oom_score_adj` — the runtime
//! clamps it; the value asked for is still the kubelet's.)

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use skiff_api::Quantity;

use crate::runtime::{LinuxContainerConfig, LinuxResources, LinuxSecurity};

/// CFS period the kubelet uses (100 ms, in µs).
const CPU_PERIOD: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const MIN_QUOTA: i64 = 1000;
const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// A pod's QoS class, as the API server and kubelet compute it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

fn amount(value: Option<&ApiQuantity>, unit: &str) -> Option<i64> {
    let value = Quantity::parse(&value?.0).ok()?;
    let unit = Quantity::parse(unit).ok()?;
    value.ceil_div(unit).and_then(|v| i64::try_from(v).ok())
}

fn request(container: &Container, resource: &str, unit: &str) -> Option<i64> {
    amount(container.resources.as_ref()?.requests.as_ref()?.get(resource), unit)
}

fn limit(container: &Container, resource: &str, unit: &str) -> Option<i64> {
    amount(container.resources.as_ref()?.limits.as_ref()?.get(resource), unit)
}

/// The QoS class of `pod`: Guaranteed when every container has cpu and memory limits
/// equal to its requests, BestEffort when none has any, Burstable otherwise.
pub fn qos_class(pod: &Pod) -> QosClass {
    let Some(spec) = &pod.spec else { return QosClass::BestEffort };
    let containers: Vec<&Container> = spec.containers.iter().chain(spec.init_containers.iter().flatten()).collect();
    let positive = |v: Option<i64>| v.filter(|v| *v > 0);
    let mut any = false;
    let mut guaranteed = true;
    for container in &containers {
        for (resource, unit) in [("cpu", "1m"), ("memory", "1")] {
            let (req, lim) = (positive(request(container, resource, unit)), positive(limit(container, resource, unit)));
            any |= req.is_some() || lim.is_some();
            // A request defaults to its limit, so a missing request with a limit is equal.
            guaranteed &= lim.is_some() && req.is_none_or(|r| Some(r) == lim);
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

/// The kubelet's oom_score_adj for a container: -997 for Guaranteed, 1000 for BestEffort,
/// and for Burstable `1000 − 1000 × memory request / node memory`, kept within [3, 999].
pub fn oom_score_adj(qos: QosClass, container: &Container, memory_capacity: i64) -> i64 {
    match qos {
        QosClass::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => BEST_EFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {
            let requested = request(container, "memory", "1").unwrap_or(0);
            let adj = if memory_capacity > 0 {
                1000 - (1000 * i128::from(requested) / i128::from(memory_capacity)) as i64
            } else {
                1000
            };
            adj.clamp(1000 + GUARANTEED_OOM_SCORE_ADJ, BEST_EFFORT_OOM_SCORE_ADJ - 1)
        }
    }
}

/// The Linux configuration of `container` in `pod`.
pub fn linux_config(pod: &Pod, container: &Container, memory_capacity: i64) -> LinuxContainerConfig {
    let qos = qos_class(pod);
    let cpu_request = request(container, "cpu", "1m").or_else(|| limit(container, "cpu", "1m")).unwrap_or(0);
    let cpu_limit = limit(container, "cpu", "1m");
    let resources = LinuxResources {
        cpu_shares: (cpu_request * 1024 / 1000).max(MIN_SHARES),
        cpu_period: if cpu_limit.is_some() { CPU_PERIOD } else { 0 },
        cpu_quota: cpu_limit.map_or(0, |milli| (milli * CPU_PERIOD / 1000).max(MIN_QUOTA)),
        memory_limit_in_bytes: limit(container, "memory", "1").unwrap_or(0),
        oom_score_adj: oom_score_adj(qos, container, memory_capacity),
    };

    let pod_security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let security = container.security_context.as_ref();
    let mut supplemental_groups: Vec<i64> =
        pod_security.and_then(|s| s.supplemental_groups.clone()).unwrap_or_default();
    if let Some(fs_group) = pod_security.and_then(|s| s.fs_group) {
        if !supplemental_groups.contains(&fs_group) {
            supplemental_groups.push(fs_group);
        }
    }
    let capabilities = security.and_then(|s| s.capabilities.as_ref());
    LinuxContainerConfig {
        resources,
        security: LinuxSecurity {
            run_as_user: security.and_then(|s| s.run_as_user).or_else(|| pod_security.and_then(|s| s.run_as_user)),
            run_as_group: security.and_then(|s| s.run_as_group).or_else(|| pod_security.and_then(|s| s.run_as_group)),
            supplemental_groups,
            readonly_rootfs: security.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
            privileged: security.and_then(|s| s.privileged).unwrap_or(false),
            no_new_privs: security.and_then(|s| s.allow_privilege_escalation) == Some(false),
            add_capabilities: capabilities.and_then(|c| c.add.clone()).unwrap_or_default(),
            drop_capabilities: capabilities.and_then(|c| c.drop.clone()).unwrap_or_default(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GI: i64 = 1 << 30;

    fn pod(containers: serde_json::Value, security: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"containers": containers, "securityContext": security}}),
        )
        .unwrap()
    }

    fn first(pod: &Pod) -> &Container {
        &pod.spec.as_ref().unwrap().containers[0]
    }

    #[test]
    fn qos_classes() {
        let best = pod(json!([{"name": "a"}]), json!({}));
        assert_eq!(qos_class(&best), QosClass::BestEffort);
        let guaranteed =
            pod(json!([{"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}}]), json!({}));
        assert_eq!(qos_class(&guaranteed), QosClass::Guaranteed);
        let burstable = pod(
            json!([{"name": "a", "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "500m", "memory": "1Gi"}}}]),
            json!({}),
        );
        assert_eq!(qos_class(&burstable), QosClass::Burstable);
    }

    #[test]
    fn resources_by_the_kubelet_formulas() {
        let p = pod(
            json!([{"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1500m", "memory": "2Gi"}}}]),
            json!({}),
        );
        let config = linux_config(&p, first(&p), 8 * GI);
        assert_eq!(config.resources.cpu_shares, 256);
        assert_eq!(config.resources.cpu_period, 100_000);
        assert_eq!(config.resources.cpu_quota, 150_000);
        assert_eq!(config.resources.memory_limit_in_bytes, 2 * GI);
        assert_eq!(config.resources.oom_score_adj, 875, "1000 - 1000 * 1Gi / 8Gi");

        let best = pod(json!([{"name": "a"}]), json!({}));
        let config = linux_config(&best, first(&best), 8 * GI);
        assert_eq!((config.resources.cpu_shares, config.resources.cpu_quota), (2, 0));
        assert_eq!(config.resources.oom_score_adj, 1000);

        let tiny = pod(json!([{"name": "a", "resources": {"limits": {"cpu": "1m", "memory": "8Gi"}}}]), json!({}));
        let config = linux_config(&tiny, first(&tiny), 8 * GI);
        assert_eq!((config.resources.cpu_shares, config.resources.cpu_quota), (2, 1000), "floors");
        assert_eq!(config.resources.oom_score_adj, -997);

        let hog = pod(json!([{"name": "a", "resources": {"requests": {"memory": "16Gi"}}}]), json!({}));
        assert_eq!(linux_config(&hog, first(&hog), 8 * GI).resources.oom_score_adj, 3);
    }

    #[test]
    fn security_context_merges_pod_and_container() {
        let p = pod(
            json!([{"name": "a", "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": true,
                "allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}]),
            json!({"runAsUser": 1, "runAsGroup": 3000, "supplementalGroups": [4000], "fsGroup": 2000}),
        );
        let security = linux_config(&p, first(&p), GI).security;
        assert_eq!(security.run_as_user, Some(1000), "the container's wins");
        assert_eq!(security.run_as_group, Some(3000));
        assert_eq!(security.supplemental_groups, vec![4000, 2000]);
        assert!(security.readonly_rootfs && security.no_new_privs && !security.privileged);
        assert_eq!(security.add_capabilities, vec!["NET_ADMIN"]);
        assert_eq!(security.drop_capabilities, vec!["ALL"]);
    }
}
