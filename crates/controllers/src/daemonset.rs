//! DaemonSet controller (kube-controller-manager's daemonset-controller): one pod on
//! every node that should run it — the node passes the pod's nodeSelector and required
//! node affinity and its taints are tolerated (the scheduler's own predicates decide, as
//! in Kubernetes) — counting the tolerations every daemon pod gets automatically. Each pod
//! is pinned to its node by a required node affinity on `metadata.name` and bound by the
//! scheduler. Templates are kept as ControllerRevisions; RollingUpdate replaces old pods
//! within maxUnavailable (or surges new ones beside them within maxSurge), OnDelete only
//! when the user deletes them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{future, StreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use skiff_client::events::reference;
use skiff_client::is_status;
use skiff_scheduler::model::{NodeInfo, PodInfo};
use skiff_scheduler::plugins::{node_affinity, taint_toleration};
use skiff_scheduler::selector::LabelSelector;
use tracing::debug;

use crate::history::{self, REVISION_HASH_LABEL};
use crate::Context;

pub const NAME: &str = "daemonset-controller";
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

pub async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let controller = Controller::new(Api::<DaemonSet>::all(client), watcher::Config::default());
    let daemonsets = controller.store();
    controller
        .owns_shared_stream(context.informers.pods().touched())
        // Any node change may change where daemons should run.
        .watches_shared_stream(context.informers.nodes().touched(), move |_| {
            daemonsets.state().iter().map(|ds| ObjectRef::from_obj(&**ds)).collect::<Vec<_>>()
        })
        .run(reconcile, |_, error, _| retry(error), context)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "daemonset reconcile failed");
            }
        })
        .await;
}

fn retry(error: &kube::Error) -> Action {
    debug!(%error, "retrying");
    Action::requeue(Duration::from_secs(1))
}

/// The tolerations Kubernetes adds to every daemon pod, so that daemons keep running (and
/// start) on nodes that are not ready, unreachable, under pressure or cordoned.
fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let toleration = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    };
    let mut tolerations = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        tolerations.push(toleration("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    tolerations
}

/// A daemon pod from the template, with the default tolerations added; whether a node
/// should run it is judged on this, before it is pinned to a node.
fn template_pod(ds: &DaemonSet, hash: &str) -> Pod {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    labels.insert(TEMPLATE_GENERATION_LABEL.into(), ds.metadata.generation.unwrap_or(1).to_string());
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for toleration in default_tolerations(spec.host_network == Some(true)) {
        if !tolerations.iter().any(|t| t.key == toleration.key && t.effect == toleration.effect) {
            tolerations.push(toleration);
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![owner_reference(ds)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The daemon pod for `node`: pinned to it by a required node affinity on
/// `metadata.name` (replacing the template's required terms, which the node already
/// passed); the scheduler binds it, checking resources as for any pod.
fn pinned(mut pod: Pod, node: &str) -> Pod {
    let spec = pod.spec.get_or_insert_with(Default::default);
    let affinity = spec.affinity.get_or_insert_with(Default::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(Default::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(
        serde_json::from_value(json!({"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}
        ]}]}))
        .unwrap_or_default(),
    );
    pod
}

fn owner_reference(ds: &DaemonSet) -> OwnerReference {
    OwnerReference {
        api_version: DaemonSet::api_version(&()).into_owned(),
        kind: DaemonSet::kind(&()).into_owned(),
        name: ds.name_any(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether a daemon pod should run on `node`: its node selector, required affinity and
/// the node's NoSchedule/NoExecute taints against its tolerations.
fn should_run(template_pod: &Pod, node: &Node) -> bool {
    let pod = PodInfo::from_pod(template_pod);
    let node = NodeInfo::from_node(node);
    node_affinity::filter(&pod, &node).is_none() && taint_toleration::filter(&pod, &node).is_none()
}

/// The node a daemon pod is for: where it is bound, else the node its affinity names.
fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(node);
    }
    let required =
        spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    let term = required.node_selector_terms.first()?;
    let field = term.match_fields.as_ref()?.iter().find(|f| f.key == "metadata.name" && f.operator == "In")?;
    field.values.as_ref()?.first().cloned()
}

fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.conditions.as_ref()).into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

/// An int-or-percent of `total`, rounded as Kubernetes rounds it (up for surge, down
/// for unavailable).
fn scaled(value: Option<&IntOrString>, total: usize, default: usize, round_up: bool) -> usize {
    match value {
        None => default,
        Some(IntOrString::Int(n)) => (*n).max(0) as usize,
        Some(IntOrString::String(text)) => {
            let percent: f64 = text.trim_end_matches('%').parse().unwrap_or(0.0);
            let exact = percent * total as f64 / 100.0;
            (if round_up { exact.ceil() } else { exact.floor() }) as usize
        }
    }
}

async fn reconcile(ds: Arc<DaemonSet>, context: Arc<Context>) -> Result<Action, kube::Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = ds.namespace().unwrap_or_default();
    let client = &context.client;
    let api = Api::<DaemonSet>::namespaced(client.clone(), &namespace);
    let Some(ds) = api.get_opt(&ds.name_any()).await? else { return Ok(Action::await_change()) };
    let pods_api = Api::<Pod>::namespaced(client.clone(), &namespace);
    let revisions_api = Api::<ControllerRevision>::namespaced(client.clone(), &namespace);
    let events = context.events.reporting_as(NAME);
    let spec = ds.spec.clone().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let selector = LabelSelector::from_api(Some(&spec.selector)).unwrap_or_else(|_| LabelSelector::nothing());
    let selector_labels: BTreeMap<String, String> = spec.selector.match_labels.clone().unwrap_or_default();

    // The current template's revision.
    let mut revisions = history::list(&revisions_api, &uid).await?;
    let template = serde_json::to_value(&spec.template).map_err(kube::Error::SerdeError)?;
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let (hash, _) = history::ensure(
        &revisions_api,
        &mut revisions,
        owner_reference(&ds),
        selector_labels,
        history::template_patch(&template),
        collision_count,
    )
    .await?;

    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?.items;
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
        .filter(|p| selector.matches(&p.labels().iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
        .collect();
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        if let Some(node) = node_of(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    let probe = template_pod(&ds, &hash);
    let updated = |p: &Pod| p.labels().get(REVISION_HASH_LABEL) == Some(&hash);

    let mut create: Vec<String> = Vec::new();
    let mut delete: Vec<&Pod> = Vec::new();
    let mut status = DaemonSetStatus { observed_generation: ds.metadata.generation, ..DaemonSetStatus::default() };
    let (mut desired, mut scheduled, mut ready, mut updated_count, mut misscheduled) = (0, 0, 0, 0, 0);
    // Nodes whose only daemon is of an old revision, with whether it is ready.
    let mut old_only: Vec<(&Pod, bool)> = Vec::new();
    let mut unavailable = 0;
    // Nodes where a new daemon runs beside an old one that it has not yet replaced.
    let mut surging = 0;
    let rolling =
        spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
    let node_names: Vec<String> = nodes.iter().map(|n| n.name_any()).collect();
    for node in &nodes {
        let name = node.name_any();
        let mut here: Vec<&Pod> = by_node.remove(&name).unwrap_or_default();
        if !should_run(&probe, node) {
            if !here.is_empty() {
                misscheduled += 1;
                delete.extend(here);
            }
            continue;
        }
        desired += 1;
        // Failed daemons are replaced.
        let (failed, mut live): (Vec<&Pod>, Vec<&Pod>) = here.drain(..).partition(|p| phase(p) == "Failed");
        delete.extend(failed);
        if live.is_empty() {
            create.push(name);
            unavailable += 1;
            continue;
        }
        scheduled += 1;
        // Oldest first; more than one daemon (beyond a surge pair) is one too many.
        live.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
        let new: Vec<&Pod> = live.iter().copied().filter(|p| updated(p)).collect();
        let old: Vec<&Pod> = live.iter().copied().filter(|p| !updated(p)).collect();
        if new.len() > 1 {
            delete.extend(new[1..].iter().copied());
        }
        let node_ready = live.iter().any(|p| is_ready(p));
        if node_ready {
            ready += 1;
        } else {
            unavailable += 1;
        }
        match (new.first(), old.is_empty()) {
            (Some(_), true) => updated_count += 1,
            (Some(new_pod), false) => {
                updated_count += 1;
                // A surged new daemon takes over once ready: the old ones go.
                if is_ready(new_pod) {
                    delete.extend(old);
                } else {
                    surging += 1;
                }
            }
            (None, _) => {
                if old.len() > 1 {
                    delete.extend(old[1..].iter().copied());
                }
                old_only.push((old[0], is_ready(old[0])));
            }
        }
    }
    // Daemons on nodes that no longer exist.
    for (node, pods) in by_node {
        if !node_names.contains(&node) {
            delete.extend(pods);
        }
    }

    if rolling {
        let strategy = spec.update_strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
        let max_surge = scaled(strategy.and_then(|r| r.max_surge.as_ref()), desired, 0, true);
        let max_unavailable = scaled(strategy.and_then(|r| r.max_unavailable.as_ref()), desired, 1, false);
        // Old daemons that are not ready can go at once; ready ones within the budget.
        old_only.sort_by_key(|(_, ready)| *ready);
        if max_surge > 0 {
            let mut budget = max_surge.saturating_sub(surging);
            for (pod, _) in &old_only {
                if budget == 0 {
                    break;
                }
                if let Some(node) = node_of(pod) {
                    create.push(node);
                    budget -= 1;
                }
            }
        } else {
            let mut budget = max_unavailable.saturating_sub(unavailable);
            for (pod, was_ready) in &old_only {
                if !was_ready {
                    delete.push(pod);
                } else if budget > 0 {
                    delete.push(pod);
                    budget -= 1;
                }
            }
        }
    }

    let deletions = delete.iter().map(|pod| async {
        match pods_api.delete(&pod.name_any(), &DeleteParams::default()).await {
            Ok(_) => {
                events.normal(reference(&ds), "Delete", "SuccessfulDelete", format!("Deleted pod: {}", pod.name_any()));
                Ok(())
            }
            Err(e) if is_status(&e, &[404]) => Ok(()),
            Err(e) => Err(e),
        }
    });
    future::try_join_all(deletions).await?;
    let creations = create.iter().map(|node| async {
        match pods_api.create(&PostParams::default(), &pinned(probe.clone(), node)).await {
            Ok(pod) => {
                events.normal(reference(&ds), "Create", "SuccessfulCreate", format!("Created pod: {}", pod.name_any()));
                Ok(())
            }
            Err(e) => {
                events.warning(reference(&ds), "Create", "FailedCreate", format!("Error creating: {e}"));
                Err(e)
            }
        }
    });
    future::try_join_all(creations).await?;

    let in_use: Vec<String> =
        pods.iter().filter_map(|p| p.labels().get(REVISION_HASH_LABEL).cloned()).chain([hash.clone()]).collect();
    history::prune(&revisions_api, &revisions, &in_use, spec.revision_history_limit.unwrap_or(10).max(0) as usize)
        .await?;

    status.desired_number_scheduled = desired as i32;
    status.current_number_scheduled = scheduled;
    status.number_misscheduled = misscheduled;
    status.number_ready = ready;
    status.number_available = Some(ready);
    status.number_unavailable = Some((desired as i32 - ready).max(0)).filter(|n| *n > 0);
    status.updated_number_scheduled = Some(updated_count);
    status.collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    if ds.status.as_ref() != Some(&status) {
        let mut written = ds.clone();
        written.status = Some(status);
        api.replace_status(&ds.name_any(), &PostParams::default(), &written).await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}
