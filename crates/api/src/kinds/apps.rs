//! The `apps` group: Deployments, ReplicaSets, StatefulSets, DaemonSets (all built on
//! the shared pod template rules) and ControllerRevisions.

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec,
    DeploymentStrategy, ReplicaSet, ReplicaSetSpec, RollingUpdateDaemonSet, RollingUpdateStatefulSetStrategy,
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::core::default_claim_spec;
use super::pod::{default_template, validate_template};
use super::{
    default_str, immutable, int_or_percent_value, int_or_string_json, nonnegative, not_more_than_100_percent,
    optional_one_of, positive_int_or_percent, same, selector_and_template,
};
use crate::error::FieldError;
use crate::strategy::{KindRules, SelectableField};

const ROLLING_UPDATE: &str = "RollingUpdate";

/// The labels of a template.
fn template_labels(template: &PodTemplateSpec) -> Option<&std::collections::BTreeMap<String, String>> {
    template.metadata.as_ref().and_then(|m| m.labels.as_ref())
}

/// The template of a controller's pods: valid, restarted always, never deadlined.
/// `deadline` is the error for an `activeDeadlineSeconds`, which each kind words its own way.
fn pod_template(template: &PodTemplateSpec, deadline: impl FnOnce(i64) -> FieldError) -> Vec<FieldError> {
    let mut errors = validate_template(template, "spec.template");
    let spec = template.spec.as_ref();
    let restart_policy = spec.and_then(|s| s.restart_policy.as_deref()).unwrap_or("");
    // An empty policy was already reported as required.
    if !restart_policy.is_empty() && restart_policy != "Always" {
        errors.push(FieldError::not_supported("spec.template.spec.restartPolicy", restart_policy, &["Always"]));
    }
    if let Some(seconds) = spec.and_then(|s| s.active_deadline_seconds) {
        errors.push(deadline(seconds));
    }
    errors
}

fn replica_set_deadline(_: i64) -> FieldError {
    FieldError::forbidden(
        "spec.template.spec.activeDeadlineSeconds",
        "activeDeadlineSeconds in ReplicaSet is not Supported",
    )
}

/// maxUnavailable and maxSurge: counts or percentages, maxUnavailable at most 100%.
fn rolling_bounds(
    max_unavailable: Option<&IntOrString>,
    max_surge: Option<&IntOrString>,
    path: &str,
) -> Vec<FieldError> {
    let unavailable_path = format!("{path}.maxUnavailable");
    let mut errors = Vec::new();
    errors.extend(max_unavailable.and_then(|v| positive_int_or_percent(v, &unavailable_path)));
    errors.extend(max_surge.and_then(|v| positive_int_or_percent(v, &format!("{path}.maxSurge"))));
    errors.extend(max_unavailable.and_then(|v| not_more_than_100_percent(v, &unavailable_path)));
    errors
}

// ---------------------------------------------------------------------------------------
// Deployment
// ---------------------------------------------------------------------------------------

impl KindRules for Deployment {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(DeploymentSpec::default);
        spec.replicas.get_or_insert(1);
        let strategy = spec.strategy.get_or_insert_with(DeploymentStrategy::default);
        default_str(&mut strategy.type_, ROLLING_UPDATE);
        if strategy.type_.as_deref() == Some(ROLLING_UPDATE) {
            let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
            rolling.max_unavailable.get_or_insert_with(|| IntOrString::String("25%".into()));
            rolling.max_surge.get_or_insert_with(|| IntOrString::String("25%".into()));
        }
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        default_template(&mut spec.template);
    }

    fn prepare_create(&mut self) {
        self.status = Some(Default::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        let spec = self.spec.clone().unwrap_or_default();
        let mut errors: Vec<FieldError> = nonnegative(spec.replicas, "spec.replicas").into_iter().collect();
        errors.extend(selector_and_template(&spec.selector, template_labels(&spec.template)));
        errors.extend(pod_template(&spec.template, replica_set_deadline));
        errors.extend(deployment_strategy(&spec.strategy.unwrap_or_default()));
        errors.extend(nonnegative(spec.min_ready_seconds, "spec.minReadySeconds"));
        errors.extend(nonnegative(spec.revision_history_limit, "spec.revisionHistoryLimit"));
        if let Some(deadline) = spec.progress_deadline_seconds {
            errors.extend(nonnegative(Some(deadline), "spec.progressDeadlineSeconds"));
            if deadline <= spec.min_ready_seconds.unwrap_or(0) {
                errors.push(FieldError::invalid(
                    "spec.progressDeadlineSeconds",
                    deadline,
                    "must be greater than minReadySeconds",
                ));
            }
        }
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let selector = |d: &Self| d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        immutable(&selector(self), &selector(old), "spec.selector").into_iter().collect()
    }
}

fn deployment_strategy(strategy: &DeploymentStrategy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match (strategy.type_.as_deref().unwrap_or(""), &strategy.rolling_update) {
        ("Recreate", Some(_)) => errors.push(FieldError::forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        ("Recreate", None) => {}
        (ROLLING_UPDATE, None) => {
            errors
                .push(FieldError::required("spec.strategy.rollingUpdate", "this should be defaulted and never be nil"));
        }
        (ROLLING_UPDATE, Some(rolling)) => {
            let (unavailable, surge) = (rolling.max_unavailable.as_ref(), rolling.max_surge.as_ref());
            errors.extend(rolling_bounds(unavailable, surge, "spec.strategy.rollingUpdate"));
            if int_or_percent_value(unavailable) == 0 && int_or_percent_value(surge) == 0 {
                errors.push(FieldError::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    unavailable.map_or(serde_json::Value::Null, int_or_string_json),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        (other, _) => errors.push(FieldError::not_supported("spec.strategy", other, &["Recreate", ROLLING_UPDATE])),
    }
    errors
}

// ---------------------------------------------------------------------------------------
// ReplicaSet
// ---------------------------------------------------------------------------------------

impl KindRules for ReplicaSet {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(ReplicaSetSpec::default);
        spec.replicas.get_or_insert(1);
        default_template(spec.template.get_or_insert_with(Default::default));
    }

    fn prepare_create(&mut self) {
        self.status = Some(Default::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        let spec = self.spec.clone().unwrap_or_default();
        let template = spec.template.unwrap_or_default();
        let mut errors: Vec<FieldError> = nonnegative(spec.replicas, "spec.replicas").into_iter().collect();
        errors.extend(nonnegative(spec.min_ready_seconds, "spec.minReadySeconds"));
        errors.extend(selector_and_template(&spec.selector, template_labels(&template)));
        errors.extend(pod_template(&template, replica_set_deadline));
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let selector = |rs: &Self| rs.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        immutable(&selector(self), &selector(old), "spec.selector").into_iter().collect()
    }

    const FIELDS: &'static [SelectableField] = &[SelectableField::count("status.replicas")];
}

// ---------------------------------------------------------------------------------------
// StatefulSet
// ---------------------------------------------------------------------------------------

impl KindRules for StatefulSet {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(StatefulSetSpec::default);
        default_str(&mut spec.pod_management_policy, "OrderedReady");
        let strategy = spec.update_strategy.get_or_insert_with(StatefulSetUpdateStrategy::default);
        if strategy.type_.as_deref().is_none_or(str::is_empty) {
            strategy.type_ = Some(ROLLING_UPDATE.into());
            strategy.rolling_update.get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
        }
        if strategy.type_.as_deref() == Some(ROLLING_UPDATE) {
            if let Some(rolling) = &mut strategy.rolling_update {
                rolling.partition.get_or_insert(0);
            }
        }
        let retention = spec
            .persistent_volume_claim_retention_policy
            .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
        default_str(&mut retention.when_deleted, "Retain");
        default_str(&mut retention.when_scaled, "Retain");
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        default_template(&mut spec.template);
        for claim in spec.volume_claim_templates.iter_mut().flatten() {
            default_claim_spec(claim.spec.get_or_insert_with(Default::default));
            default_str(&mut claim.status.get_or_insert_with(Default::default).phase, "Pending");
        }
    }

    fn prepare_create(&mut self) {
        self.status = Some(Default::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        let spec = self.spec.clone().unwrap_or_default();
        let mut errors = Vec::new();
        match spec.pod_management_policy.as_deref().unwrap_or("") {
            "" => errors.push(FieldError::required("spec.podManagementPolicy", "")),
            "OrderedReady" | "Parallel" => {}
            other => errors.push(FieldError::invalid(
                "spec.podManagementPolicy",
                other,
                "must be 'OrderedReady' or 'Parallel'",
            )),
        }
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        match (strategy.type_.as_deref().unwrap_or(""), &strategy.rolling_update) {
            ("", _) => errors.push(FieldError::required("spec.updateStrategy", "")),
            ("OnDelete", Some(rolling)) => errors.push(FieldError::invalid(
                "spec.updateStrategy.rollingUpdate",
                super::json(rolling),
                "only allowed for updateStrategy 'RollingUpdate'",
            )),
            ("OnDelete", None) | (ROLLING_UPDATE, None) => {}
            (ROLLING_UPDATE, Some(rolling)) => {
                errors.extend(nonnegative(rolling.partition, "spec.updateStrategy.rollingUpdate.partition"));
            }
            (other, _) => {
                errors.push(FieldError::invalid("spec.updateStrategy", other, "must be 'RollingUpdate' or 'OnDelete'"))
            }
        }
        if let Some(retention) = &spec.persistent_volume_claim_retention_policy {
            for (field, value) in [("whenDeleted", &retention.when_deleted), ("whenScaled", &retention.when_scaled)] {
                errors.extend(optional_one_of(
                    value.as_deref(),
                    &["Retain", "Delete"],
                    &format!("spec.persistentVolumeClaimRetentionPolicy.{field}"),
                ));
            }
        }
        errors.extend(nonnegative(spec.replicas, "spec.replicas"));
        errors.extend(nonnegative(spec.min_ready_seconds, "spec.minReadySeconds"));
        errors.extend(nonnegative(spec.ordinals.and_then(|o| o.start), "spec.ordinals.start"));
        errors.extend(selector_and_template(&spec.selector, template_labels(&spec.template)));
        errors.extend(pod_template(&spec.template, |_| {
            FieldError::forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in StatefulSet is not Supported",
            )
        }));
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        // Only these may change; everything else in the spec is fixed at creation.
        let mutable_cleared = |set: &Self| {
            let mut spec = set.spec.clone().unwrap_or_default();
            spec.replicas = None;
            spec.ordinals = None;
            spec.template = PodTemplateSpec::default();
            spec.update_strategy = None;
            spec.revision_history_limit = None;
            spec.persistent_volume_claim_retention_policy = None;
            spec.min_ready_seconds = None;
            spec
        };
        if same(&mutable_cleared(self), &mutable_cleared(old)) {
            return Vec::new();
        }
        vec![FieldError::forbidden(
            "spec",
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', \
             'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        )]
    }
}

// ---------------------------------------------------------------------------------------
// DaemonSet
// ---------------------------------------------------------------------------------------

impl KindRules for DaemonSet {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(DaemonSetSpec::default);
        let strategy = spec.update_strategy.get_or_insert_with(DaemonSetUpdateStrategy::default);
        default_str(&mut strategy.type_, ROLLING_UPDATE);
        if strategy.type_.as_deref() == Some(ROLLING_UPDATE) {
            let rolling = strategy.rolling_update.get_or_insert_with(RollingUpdateDaemonSet::default);
            rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
            rolling.max_surge.get_or_insert(IntOrString::Int(0));
        }
        spec.revision_history_limit.get_or_insert(10);
        default_template(&mut spec.template);
    }

    fn prepare_create(&mut self) {
        self.status = Some(Default::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        let spec = self.spec.clone().unwrap_or_default();
        let mut errors = selector_and_template(&spec.selector, template_labels(&spec.template));
        errors.extend(pod_template(&spec.template, |seconds| {
            FieldError::invalid(
                "spec.template.spec.activeDeadlineSeconds",
                seconds,
                "activeDeadlineSeconds must be nil for daemons",
            )
        }));
        errors.extend(nonnegative(spec.min_ready_seconds, "spec.minReadySeconds"));
        errors.extend(daemon_set_strategy(&spec.update_strategy.unwrap_or_default()));
        errors.extend(nonnegative(spec.revision_history_limit, "spec.revisionHistoryLimit"));
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let selector = |ds: &Self| ds.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        immutable(&selector(self), &selector(old), "spec.selector").into_iter().collect()
    }
}

fn daemon_set_strategy(strategy: &DaemonSetUpdateStrategy) -> Vec<FieldError> {
    const PATH: &str = "spec.updateStrategy.rollingUpdate";
    match (strategy.type_.as_deref().unwrap_or(""), &strategy.rolling_update) {
        ("OnDelete", _) => Vec::new(),
        (ROLLING_UPDATE, None) => vec![FieldError::required(PATH, "")],
        (ROLLING_UPDATE, Some(rolling)) => {
            let (unavailable, surge) = (rolling.max_unavailable.as_ref(), rolling.max_surge.as_ref());
            let mut errors = rolling_bounds(unavailable, surge, PATH);
            errors.extend(surge.and_then(|s| not_more_than_100_percent(s, &format!("{PATH}.maxSurge"))));
            match (int_or_percent_value(unavailable) != 0, int_or_percent_value(surge) != 0) {
                (true, true) => errors.push(FieldError::invalid(
                    format!("{PATH}.maxSurge"),
                    surge.map_or(serde_json::Value::Null, int_or_string_json),
                    "may not be set when maxUnavailable is non-zero",
                )),
                (false, false) => {
                    errors
                        .push(FieldError::required(format!("{PATH}.maxUnavailable"), "cannot be 0 when maxSurge is 0"));
                }
                _ => {}
            }
            errors
        }
        (other, _) => vec![FieldError::not_supported("spec.updateStrategy", other, &[ROLLING_UPDATE, "OnDelete"])],
    }
}

// ---------------------------------------------------------------------------------------
// ControllerRevision
// ---------------------------------------------------------------------------------------

impl KindRules for ControllerRevision {
    fn validate(&self) -> Vec<FieldError> {
        nonnegative(Some(self.revision), "revision").into_iter().collect()
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        immutable(&self.data, &old.data, "data").into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::messages;

    fn defaulted<T: KindRules>(value: serde_json::Value) -> T {
        let mut object: T = serde_json::from_value(value).unwrap();
        object.default();
        object
    }

    fn workload_spec() -> serde_json::Value {
        json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}},
        })
    }

    fn deployment(spec: serde_json::Value) -> Deployment {
        defaulted(json!({"metadata": {"name": "d", "namespace": "n"}, "spec": spec}))
    }

    #[test]
    fn deployment_defaults() {
        let d = deployment(workload_spec());
        let spec = d.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.revision_history_limit, Some(10));
        assert_eq!(spec.progress_deadline_seconds, Some(600));
        let strategy = spec.strategy.as_ref().unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.as_ref().unwrap();
        assert_eq!(rolling.max_surge, Some(IntOrString::String("25%".into())));
        assert_eq!(rolling.max_unavailable, Some(IntOrString::String("25%".into())));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Always"));
        assert_eq!(pod.containers[0].image_pull_policy.as_deref(), Some("Always"));
        assert!(d.validate().is_empty());
        let mut created = d.clone();
        created.prepare_create();
        assert_eq!(created.status, Some(Default::default()));
    }

    #[test]
    fn recreate_gets_no_rolling_update() {
        let mut spec = workload_spec();
        spec["strategy"] = json!({"type": "Recreate"});
        let d = deployment(spec);
        assert_eq!(d.spec.as_ref().unwrap().strategy.as_ref().unwrap().rolling_update, None);
        assert!(d.validate().is_empty());
    }

    #[test]
    fn deployment_selector_rules() {
        let mut spec = workload_spec();
        spec["selector"] = json!({});
        assert_eq!(
            messages(&deployment(spec).validate()),
            vec![
                "spec.selector: Required value",
                r#"spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match template `labels`"#,
            ]
        );
        let mut spec = workload_spec();
        spec["selector"] = json!({"matchLabels": {"app": "api"}});
        assert_eq!(
            messages(&deployment(spec).validate()),
            vec![
                r#"spec.template.metadata.labels: Invalid value: {"app":"web"}: `selector` does not match template `labels`"#
            ]
        );
    }

    #[test]
    fn deployment_field_rules() {
        let mut spec = workload_spec();
        spec["replicas"] = json!(-1);
        spec["strategy"] = json!({"type": "Blue"});
        spec["template"]["spec"]["restartPolicy"] = json!("Never");
        spec["template"]["spec"]["containers"] = json!([]);
        assert_eq!(
            messages(&deployment(spec).validate()),
            vec![
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.spec.containers: Required value",
                r#"spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always""#,
                r#"spec.strategy: Unsupported value: "Blue": supported values: "Recreate", "RollingUpdate""#,
            ]
        );
        let mut spec = workload_spec();
        spec["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "150%"}});
        assert_eq!(
            messages(&deployment(spec).validate()),
            vec![r#"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be greater than 100%"#]
        );
        let mut spec = workload_spec();
        spec["strategy"] = json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
        assert_eq!(
            messages(&deployment(spec).validate()),
            vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]
        );
    }

    #[test]
    fn deployment_selector_is_immutable() {
        let old = deployment(workload_spec());
        let mut new = old.clone();
        new.spec.as_mut().unwrap().selector.match_labels.as_mut().unwrap().insert("tier".into(), "front".into());
        assert_eq!(
            messages(&new.validate_update(&old)),
            vec![r#"spec.selector: Invalid value: {"matchLabels":{"app":"web","tier":"front"}}: field is immutable"#]
        );
        let mut scaled = old.clone();
        scaled.spec.as_mut().unwrap().replicas = Some(5);
        assert!(scaled.validate_update(&old).is_empty());
    }

    #[test]
    fn replica_set_rules() {
        let rs: ReplicaSet = defaulted(json!({"metadata": {"name": "r"}, "spec": workload_spec()}));
        assert_eq!(rs.spec.as_ref().unwrap().replicas, Some(1));
        assert!(rs.validate().is_empty());
        let mut created = rs.clone();
        created.prepare_create();
        assert_eq!(crate::strategy::fields_of(&created), vec![("status.replicas", "0".to_string())]);
        let mut deadline = rs.clone();
        deadline.spec.as_mut().unwrap().template.as_mut().unwrap().spec.as_mut().unwrap().active_deadline_seconds =
            Some(5);
        assert_eq!(
            messages(&deadline.validate()),
            vec!["spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported"]
        );
        let mut moved = rs.clone();
        moved.spec.as_mut().unwrap().selector.match_labels = None;
        assert_eq!(moved.validate_update(&rs).len(), 1);
    }

    #[test]
    fn stateful_set_defaults_and_rules() {
        let mut spec = workload_spec();
        spec["volumeClaimTemplates"] =
            json!([{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]);
        let sts: StatefulSet = defaulted(json!({"metadata": {"name": "s"}, "spec": spec}));
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
        assert_eq!(spec.revision_history_limit, Some(10));
        let strategy = spec.update_strategy.as_ref().unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(strategy.rolling_update.as_ref().unwrap().partition, Some(0));
        let retention = spec.persistent_volume_claim_retention_policy.as_ref().unwrap();
        assert_eq!(
            (retention.when_deleted.as_deref(), retention.when_scaled.as_deref()),
            (Some("Retain"), Some("Retain"))
        );
        let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
        assert_eq!(claim.spec.as_ref().unwrap().volume_mode.as_deref(), Some("Filesystem"));
        assert_eq!(claim.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));
        assert!(sts.validate().is_empty());

        let mut bad = sts.clone();
        let bad_spec = bad.spec.as_mut().unwrap();
        bad_spec.pod_management_policy = Some("Random".into());
        bad_spec.update_strategy =
            Some(StatefulSetUpdateStrategy { type_: Some("Sometimes".into()), rolling_update: None });
        assert_eq!(
            messages(&bad.validate()),
            vec![
                r#"spec.podManagementPolicy: Invalid value: "Random": must be 'OrderedReady' or 'Parallel'"#,
                r#"spec.updateStrategy: Invalid value: "Sometimes": must be 'RollingUpdate' or 'OnDelete'"#,
            ]
        );
    }

    #[test]
    fn stateful_set_updates() {
        let old: StatefulSet = defaulted(json!({"metadata": {"name": "s"}, "spec": workload_spec()}));
        let mut scaled = old.clone();
        let spec = scaled.spec.as_mut().unwrap();
        spec.replicas = Some(3);
        spec.template.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert!(scaled.validate_update(&old).is_empty());
        let mut renamed = old.clone();
        renamed.spec.as_mut().unwrap().service_name = Some("other".into());
        assert_eq!(
            messages(&renamed.validate_update(&old)),
            vec!["spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]
        );
    }

    #[test]
    fn daemon_set_defaults_and_rules() {
        let ds: DaemonSet = defaulted(json!({"metadata": {"name": "d"}, "spec": workload_spec()}));
        let spec = ds.spec.as_ref().unwrap();
        let strategy = spec.update_strategy.as_ref().unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.as_ref().unwrap();
        assert_eq!(
            (rolling.max_unavailable.clone(), rolling.max_surge.clone()),
            (Some(IntOrString::Int(1)), Some(IntOrString::Int(0)))
        );
        assert_eq!(spec.revision_history_limit, Some(10));
        assert!(ds.validate().is_empty());

        let mut both = ds.clone();
        both.spec.as_mut().unwrap().update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().max_surge =
            Some(IntOrString::Int(1));
        assert_eq!(
            messages(&both.validate()),
            vec!["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"]
        );
        let mut moved = ds.clone();
        moved.spec.as_mut().unwrap().selector.match_labels = Some([("app".to_string(), "x".to_string())].into());
        assert_eq!(moved.validate_update(&ds).len(), 1);
    }

    #[test]
    fn controller_revision_rules() {
        let old: ControllerRevision =
            serde_json::from_value(json!({"metadata": {"name": "r"}, "revision": 1, "data": {"a": 1}})).unwrap();
        let mut new = old.clone();
        new.revision = -1;
        new.data = Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(json!({"a": 2})));
        assert_eq!(messages(&new.validate()), vec!["revision: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(messages(&new.validate_update(&old)), vec![r#"data: Invalid value: {"a":2}: field is immutable"#]);
    }
}
