//! Label selectors and node selector terms, compiled once per pod so that matching a
//! node or a pod is a few map lookups. Semantics are Kubernetes': a missing label
//! selector selects nothing, an empty one everything; node selector terms are ORed, the
//! requirements inside a term ANDed, and an empty term matches no node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as ApiLabelSelector, LabelSelectorRequirement};

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn new(key: &str, operator: &str, values: &[String]) -> Result<Self, String> {
        let number = || -> Result<i64, String> {
            match values {
                [one] => one.parse().map_err(|_| format!("{key}: {operator} needs an integer, not {one:?}")),
                _ => Err(format!("{key}: {operator} needs exactly one value")),
            }
        };
        let op = match operator {
            "In" => Op::In(values.to_vec()),
            "NotIn" => Op::NotIn(values.to_vec()),
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" => Op::Gt(number()?),
            "Lt" => Op::Lt(number()?),
            other => return Err(format!("{key}: unknown operator {other:?}")),
        };
        Ok(Requirement { key: key.to_string(), op })
    }

    fn matches_value(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::In(values), Some(v)) => values.iter().any(|x| x == v),
            (Op::In(_), None) => false,
            (Op::NotIn(values), Some(v)) => !values.iter().any(|x| x == v),
            (Op::NotIn(_), None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v < *n),
            (Op::Gt(_) | Op::Lt(_), None) => false,
        }
    }

    fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.key).map(String::as_str))
    }
}

/// A compiled label selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// Selects nothing at all (a missing selector, or one that failed to parse).
    nothing: bool,
}

impl LabelSelector {
    pub fn nothing() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    pub fn everything() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: false }
    }

    /// A selector of exactly these labels (a Service's selector).
    pub fn from_map(labels: &Labels) -> Self {
        LabelSelector::everything().with_exact(labels.iter().map(|(k, v)| (k.clone(), v.clone())))
    }

    /// Requires both selectors (labels.Selector.Add).
    pub fn and(mut self, other: &LabelSelector) -> Self {
        self.requirements.extend(other.requirements.iter().cloned());
        self.nothing |= other.nothing;
        self
    }

    /// Whether it has no requirement at all (and so would select every pod).
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// `metav1.LabelSelectorAsSelector`: None selects nothing.
    pub fn from_api(selector: Option<&ApiLabelSelector>) -> Result<Self, String> {
        let Some(selector) = selector else { return Ok(Self::nothing()) };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement { key: key.clone(), op: Op::In(vec![value.clone()]) });
        }
        for LabelSelectorRequirement { key, operator, values } in selector.match_expressions.iter().flatten() {
            if !matches!(operator.as_str(), "In" | "NotIn" | "Exists" | "DoesNotExist") {
                return Err(format!("{key}: {operator:?} is not a valid label selector operator"));
            }
            requirements.push(Requirement::new(key, operator, values.as_deref().unwrap_or_default())?);
        }
        Ok(LabelSelector { requirements, nothing: false })
    }

    /// Like [`from_api`](Self::from_api), selecting nothing when the selector is invalid
    /// (the API server validates selectors, so that only happens with odd clients).
    pub fn from_api_lossy(selector: Option<&ApiLabelSelector>) -> Self {
        Self::from_api(selector).unwrap_or_else(|_| Self::nothing())
    }

    /// Adds `key in (value)` requirements (a topology spread constraint's matchLabelKeys).
    pub fn with_exact(mut self, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        for (key, value) in pairs {
            self.requirements.push(Requirement { key, op: Op::In(vec![value]) });
        }
        self
    }

    /// Adds `key notin (value)` requirements (an affinity term's mismatchLabelKeys).
    pub fn without(mut self, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        for (key, value) in pairs {
            self.requirements.push(Requirement { key, op: Op::NotIn(vec![value]) });
        }
        self
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// One node selector term: label expressions and `metadata.name` field expressions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTerm {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl NodeTerm {
    pub fn from_api(term: &NodeSelectorTerm) -> Result<Self, String> {
        let compile = |list: &Option<Vec<NodeSelectorRequirement>>| -> Result<Vec<Requirement>, String> {
            list.iter()
                .flatten()
                .map(|r| Requirement::new(&r.key, &r.operator, r.values.as_deref().unwrap_or_default()))
                .collect()
        };
        let fields = compile(&term.match_fields)?;
        if let Some(bad) = fields.iter().find(|r| r.key != "metadata.name") {
            return Err(format!("{}: not a supported field selector", bad.key));
        }
        Ok(NodeTerm { labels: compile(&term.match_expressions)?, fields })
    }

    /// Matches a node by its labels and name; an empty term matches nothing.
    pub fn matches(&self, labels: &Labels, name: &str) -> bool {
        (!self.labels.is_empty() || !self.fields.is_empty())
            && self.labels.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|r| r.matches_value(Some(name)))
    }

    /// The node names this term is limited to by `metadata.name In (...)`, if it is.
    pub fn names(&self) -> Option<Vec<String>> {
        let mut names: Option<Vec<String>> = None;
        for field in &self.fields {
            if let Op::In(values) = &field.op {
                names = Some(match names {
                    None => values.clone(),
                    Some(prev) => prev.into_iter().filter(|n| values.contains(n)).collect(),
                });
            }
        }
        names
    }
}

/// ORed node selector terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTerms(pub Vec<NodeTerm>);

impl NodeTerms {
    pub fn from_api(terms: &[NodeSelectorTerm]) -> Result<Self, String> {
        Ok(NodeTerms(terms.iter().map(NodeTerm::from_api).collect::<Result<_, _>>()?))
    }

    pub fn matches(&self, labels: &Labels, name: &str) -> bool {
        self.0.iter().any(|t| t.matches(labels, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn selector(value: serde_json::Value) -> LabelSelector {
        LabelSelector::from_api(Some(&serde_json::from_value(value).unwrap())).unwrap()
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(selector(json!({})).matches(&l), "empty selects everything");
        assert!(!LabelSelector::from_api(None).unwrap().matches(&l), "missing selects nothing");
        assert!(selector(json!({"matchLabels": {"app": "web"}})).matches(&l));
        assert!(!selector(json!({"matchLabels": {"app": "db"}})).matches(&l));
        let expr = |op: &str, values: serde_json::Value| {
            selector(json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]}))
        };
        assert!(expr("In", json!(["front", "back"])).matches(&l));
        assert!(!expr("NotIn", json!(["front"])).matches(&l));
        assert!(expr("Exists", json!(null)).matches(&l));
        assert!(!expr("DoesNotExist", json!(null)).matches(&l));
        assert!(LabelSelector::from_api(Some(
            &serde_json::from_value(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}))
                .unwrap()
        ))
        .is_err());
        let with = selector(json!({"matchLabels": {"app": "web"}})).with_exact([("tier".into(), "back".into())]);
        assert!(!with.matches(&l));
    }

    #[test]
    fn node_terms() {
        let term = |value: serde_json::Value| NodeTerm::from_api(&serde_json::from_value(value).unwrap()).unwrap();
        let node = labels(&[("zone", "a"), ("cores", "16")]);
        assert!(!term(json!({})).matches(&node, "n1"), "an empty term matches nothing");
        assert!(term(json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}))
            .matches(&node, "n1"));
        assert!(term(json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}))
            .matches(&node, "n1"));
        assert!(!term(json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["8"]}]}))
            .matches(&node, "n1"));
        assert!(term(json!({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]})).matches(&node, "n1"));
        let by_name = term(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}));
        assert!(by_name.matches(&node, "n1"));
        assert!(!by_name.matches(&node, "n2"));
        assert_eq!(by_name.names(), Some(vec!["n1".to_string()]));
        assert!(NodeTerm::from_api(
            &serde_json::from_value(json!({"matchFields": [{"key": "spec.x", "operator": "In", "values": ["a"]}]}))
                .unwrap()
        )
        .is_err());
        let terms = NodeTerms(vec![
            term(json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]})),
            term(json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]})),
        ]);
        assert!(terms.matches(&node, "n1"), "terms are ORed");
    }
}
