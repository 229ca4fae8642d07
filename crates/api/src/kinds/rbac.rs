//! The `rbac.authorization.k8s.io` group: roles, cluster roles and their bindings.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::{invalid_each, json, label_selector};
use crate::error::FieldError;
use crate::registry::NameRule;
use crate::strategy::KindRules;
use crate::validation;

const GROUP: &str = "rbac.authorization.k8s.io";

fn validate_rules(rules: &[PolicyRule], namespaced: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        if rule.verbs.is_empty() {
            errors.push(FieldError::required(format!("{path}.verbs"), "verbs must contain at least one value"));
        }
        let set = |list: &Option<Vec<String>>| list.as_ref().is_some_and(|l| !l.is_empty());
        if set(&rule.non_resource_urls) {
            let urls = json(&rule.non_resource_urls);
            if namespaced {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    urls.clone(),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if set(&rule.api_groups) || set(&rule.resources) || set(&rule.resource_names) {
                errors.push(FieldError::invalid(
                    format!("{path}.nonResourceURLs"),
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if !set(&rule.api_groups) {
            errors.push(FieldError::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if !set(&rule.resources) {
            errors.push(FieldError::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    errors
}

/// The group of a subject that names none, as Kubernetes defaults it.
fn default_subjects(subjects: &mut Option<Vec<Subject>>) {
    for subject in subjects.iter_mut().flatten() {
        if subject.api_group.as_deref().is_none_or(str::is_empty) {
            subject.api_group = match subject.kind.as_str() {
                "ServiceAccount" => Some(String::new()),
                "User" | "Group" => Some(GROUP.into()),
                _ => subject.api_group.take(),
            };
        }
    }
}

/// A binding's role reference and subjects. Cluster-wide bindings may only name
/// ClusterRoles, and their service accounts need a namespace.
fn validate_binding(role_ref: &RoleRef, subjects: &[Subject], namespaced: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if role_ref.api_group != GROUP {
        errors.push(FieldError::not_supported("roleRef.apiGroup", role_ref.api_group.as_str(), &[GROUP]));
    }
    let kinds: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    if !kinds.contains(&role_ref.kind.as_str()) {
        errors.push(FieldError::not_supported("roleRef.kind", role_ref.kind.as_str(), kinds));
    }
    if role_ref.name.is_empty() {
        errors.push(FieldError::required("roleRef.name", ""));
    } else {
        errors.extend(validation::name(&role_ref.name, NameRule::PathSegment, "roleRef.name"));
    }
    for (i, subject) in subjects.iter().enumerate() {
        let path = format!("subjects[{i}]");
        if subject.name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        }
        let group = subject.api_group.as_deref().unwrap_or("");
        match subject.kind.as_str() {
            "ServiceAccount" => {
                if !subject.name.is_empty() {
                    errors.extend(invalid_each(
                        &format!("{path}.name"),
                        &subject.name,
                        validation::dns1123_subdomain(&subject.name),
                    ));
                }
                if !group.is_empty() {
                    errors.push(FieldError::not_supported(format!("{path}.apiGroup"), group, &[""]));
                }
                if !namespaced && subject.namespace.as_deref().is_none_or(str::is_empty) {
                    errors.push(FieldError::required(format!("{path}.namespace"), ""));
                }
            }
            "User" | "Group" if group != GROUP => {
                errors.push(FieldError::not_supported(format!("{path}.apiGroup"), group, &[GROUP]));
            }
            "User" | "Group" => {}
            other => errors.push(FieldError::not_supported(
                format!("{path}.kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    errors
}

fn role_ref_update(new: &RoleRef, old: &RoleRef) -> Vec<FieldError> {
    if new == old {
        return Vec::new();
    }
    vec![FieldError::invalid("roleRef", json(new), "cannot change roleRef")]
}

impl KindRules for Role {
    fn validate(&self) -> Vec<FieldError> {
        validate_rules(self.rules.as_deref().unwrap_or_default(), true)
    }
}

impl KindRules for ClusterRole {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_rules(self.rules.as_deref().unwrap_or_default(), false);
        let selectors = self.aggregation_rule.iter().flat_map(|a| a.cluster_role_selectors.iter().flatten());
        for (i, selector) in selectors.enumerate() {
            errors.extend(label_selector(selector, &format!("aggregationRule.clusterRoleSelectors[{i}]")));
        }
        errors
    }
}

impl KindRules for RoleBinding {
    fn default(&mut self) {
        default_role_ref(&mut self.role_ref);
        default_subjects(&mut self.subjects);
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_binding(&self.role_ref, self.subjects.as_deref().unwrap_or_default(), true)
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        role_ref_update(&self.role_ref, &old.role_ref)
    }
}

impl KindRules for ClusterRoleBinding {
    fn default(&mut self) {
        default_role_ref(&mut self.role_ref);
        default_subjects(&mut self.subjects);
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_binding(&self.role_ref, self.subjects.as_deref().unwrap_or_default(), false)
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        role_ref_update(&self.role_ref, &old.role_ref)
    }
}

/// A role reference's group defaults to RBAC's.
fn default_role_ref(role_ref: &mut RoleRef) {
    if role_ref.api_group.is_empty() {
        role_ref.api_group = GROUP.into();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::{from, messages};

    #[test]
    fn role_rules() {
        let role: Role = from(json!({"metadata": {"name": "r"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"verbs": []},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
        ]}));
        assert_eq!(
            messages(&role.validate()),
            vec![
                "rules[1].verbs: Required value: verbs must contain at least one value",
                "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].resources: Required value: resource rules must supply at least one resource",
                r#"rules[2].nonResourceURLs: Invalid value: ["/healthz"]: namespaced rules cannot apply to non-resource URLs"#,
            ]
        );
        let cluster: ClusterRole =
            from(json!({"metadata": {"name": "r"}, "rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}));
        assert!(cluster.validate().is_empty());
    }

    #[test]
    fn binding_defaults_and_rules() {
        let mut binding: RoleBinding =
            from(json!({"metadata": {"name": "b"}, "roleRef": {"kind": "Role", "name": "r"}, "subjects": [
                {"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "robot"},
            ]}));
        binding.default();
        assert_eq!(binding.role_ref.api_group, GROUP);
        let subjects = binding.subjects.as_ref().unwrap();
        assert_eq!(subjects[0].api_group.as_deref(), Some(GROUP));
        assert_eq!(subjects[1].api_group.as_deref(), Some(""));
        assert!(binding.validate().is_empty());

        let mut changed = binding.clone();
        changed.role_ref.name = "other".into();
        assert_eq!(
            messages(&changed.validate_update(&binding)),
            vec![
                r#"roleRef: Invalid value: {"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"other"}: cannot change roleRef"#
            ]
        );

        let mut cluster: ClusterRoleBinding =
            from(json!({"metadata": {"name": "b"}, "roleRef": {"kind": "Role", "name": "r"}, "subjects": [
                {"kind": "ServiceAccount", "name": "robot"}, {"kind": "Robot", "name": "x"},
            ]}));
        cluster.default();
        assert_eq!(
            messages(&cluster.validate()),
            vec![
                r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#,
                "subjects[0].namespace: Required value",
                r#"subjects[1].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group""#,
            ]
        );
    }
}
