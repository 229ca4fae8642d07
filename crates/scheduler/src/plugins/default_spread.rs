//! PodTopologySpread's system defaults: a pod with no topologySpreadConstraints of its own
//! is spread, softly, like the other pods of its Services and its controlling ReplicaSet
//! or StatefulSet — over zones (maxSkew 5) and nodes (maxSkew 3),
//! both ScheduleAnyway, as kube-scheduler's `defaultingType: System` does. The selector
//! is kube-scheduler's DefaultSelector: the Services' selectors and the controller's,
//! all required at once. A pod that no workload selects gets no default constraint.

use std::collections::HashMap;

use crate::model::{PodInfo, SpreadConstraint, Unsatisfiable};
use crate::selector::{LabelSelector, Labels};

/// What selects pods, by the object's uid.
#[derive(Clone, Debug, PartialEq)]
pub enum PodSelector {
    /// A Service's spec.selector (label equality).
    Service { namespace: String, labels: Labels },
    /// A ReplicaSet's or StatefulSet's selector; pods name it in
    /// their controller ownerReference.
    Controller(LabelSelector),
}

/// The kinds of object watched for [`PodSelector`]s (a relist replaces one kind's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SelectorKind {
    Service,
    ReplicaSet,
    StatefulSet,
}

#[derive(Debug, Default)]
pub struct Selectors {
    by_uid: HashMap<String, (SelectorKind, PodSelector)>,
}

impl Selectors {
    pub fn set(&mut self, uid: String, kind: SelectorKind, selector: PodSelector) {
        self.by_uid.insert(uid, (kind, selector));
    }

    pub fn remove(&mut self, uid: &str) {
        self.by_uid.remove(uid);
    }

    /// After a relist of `kind`: keeps only those of its objects that still exist.
    pub fn retain(&mut self, kind: SelectorKind, uids: &std::collections::HashSet<String>) {
        self.by_uid.retain(|uid, (k, _)| *k != kind || uids.contains(uid));
    }

    /// kube-scheduler's DefaultSelector for `pod`, None when nothing selects it.
    pub fn default_selector(&self, pod: &PodInfo) -> Option<LabelSelector> {
        let mut selector = LabelSelector::everything();
        for (_, found) in self.by_uid.values() {
            if let PodSelector::Service { namespace, labels } = found {
                let service = LabelSelector::from_map(labels);
                if *namespace == pod.namespace && !labels.is_empty() && service.matches(&pod.labels) {
                    selector = selector.and(&service);
                }
            }
        }
        if let Some((_, PodSelector::Controller(owner))) = pod.controller_uid.as_ref().and_then(|u| self.by_uid.get(u))
        {
            selector = selector.and(owner);
        }
        (!selector.is_everything()).then_some(selector)
    }

    /// The pod with the system default constraints when it has none and something selects it.
    pub fn with_defaults(&self, pod: &PodInfo) -> Option<PodInfo> {
        if !pod.spread.is_empty() {
            return None;
        }
        let selector = self.default_selector(pod)?;
        let constraint = |key: &str, max_skew: i32| SpreadConstraint {
            max_skew,
            topology_key: key.into(),
            when_unsatisfiable: Unsatisfiable::ScheduleAnyway,
            selector: selector.clone(),
            min_domains: 1,
            honor_node_affinity: true,
            honor_node_taints: false,
        };
        let mut defaulted = pod.clone();
        defaulted.spread = vec![constraint("topology.kubernetes.io/zone", 5), constraint("kubernetes.io/hostname", 3)];
        Some(defaulted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod;
    use serde_json::json;

    fn web(owner: Option<&str>) -> PodInfo {
        let mut info = pod("web-1", json!({"app": "web", "tier": "front"}), json!({}));
        info.controller_uid = owner.map(str::to_string);
        info
    }

    #[test]
    fn services_and_the_controller_make_the_selector() {
        let mut selectors = Selectors::default();
        assert!(selectors.with_defaults(&web(None)).is_none(), "nothing selects it: no defaults");
        selectors.set(
            "svc".into(),
            SelectorKind::Service,
            PodSelector::Service { namespace: "default".into(), labels: [("app".into(), "web".into())].into() },
        );
        selectors.set(
            "other-svc".into(),
            SelectorKind::Service,
            PodSelector::Service { namespace: "elsewhere".into(), labels: [("app".into(), "web".into())].into() },
        );
        let rs = LabelSelector::from_map(&[("tier".to_string(), "front".to_string())].into());
        selectors.set("rs".into(), SelectorKind::ReplicaSet, PodSelector::Controller(rs));
        let defaulted = selectors.with_defaults(&web(Some("rs"))).unwrap();
        let keys: Vec<_> = defaulted.spread.iter().map(|c| (c.topology_key.as_str(), c.max_skew)).collect();
        assert_eq!(keys, [("topology.kubernetes.io/zone", 5), ("kubernetes.io/hostname", 3)]);
        assert!(defaulted.spread.iter().all(|c| c.when_unsatisfiable == Unsatisfiable::ScheduleAnyway));
        let selector = &defaulted.spread[0].selector;
        assert!(selector.matches(&[("app".into(), "web".into()), ("tier".into(), "front".into())].into()));
        assert!(!selector.matches(&[("app".into(), "web".into())].into()), "the ReplicaSet's selector is required too");

        let mut own = web(None);
        own.spread = defaulted.spread.clone();
        own.spread.truncate(1);
        assert!(selectors.with_defaults(&own).is_none(), "a pod's own constraints win");
        selectors.retain(SelectorKind::Service, &Default::default());
        let only_rs = selectors.default_selector(&web(Some("rs"))).unwrap();
        assert!(only_rs.matches(&[("tier".into(), "front".into())].into()));
    }

    #[test]
    fn the_defaults_spread_a_services_pods() {
        use crate::algorithm::Algorithm;
        use crate::plugins::testing::{cache, id, node};
        let zone = json!({"topology.kubernetes.io/zone": "z1"});
        let mut c = cache(
            vec![node("big", "40", "64Gi", zone.clone(), json!({})), node("small", "4", "64Gi", zone, json!({}))],
            vec![(web(None), "big"), (pod("web-2", json!({"app": "web"}), json!({})), "big")],
        );
        let incoming = pod("web-3", json!({"app": "web"}), json!({}));
        // Without defaults the roomier node wins.
        assert_eq!(Algorithm::with_seed(1).schedule(&incoming, &c).unwrap().node, id(&c, "big"));
        c.selectors.set(
            "svc".into(),
            SelectorKind::Service,
            PodSelector::Service { namespace: "default".into(), labels: [("app".into(), "web".into())].into() },
        );
        let defaulted = c.selectors.with_defaults(&incoming).unwrap();
        let mut algorithm = Algorithm::with_seed(1);
        algorithm.prepare(&defaulted, &mut c);
        assert_eq!(algorithm.schedule(&defaulted, &c).unwrap().node, id(&c, "small"), "spread over hostnames");
    }
}
