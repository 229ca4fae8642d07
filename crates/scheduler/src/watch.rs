//! Watches that feed the scheduler: nodes, pods (all but finished ones, as
//! kube-scheduler's informer does), namespaces, PodDisruptionBudgets (for preemption),
//! and the selectors of Services and controllers (for default spreading). Each runs
//! kube-rs' watcher (list, then watch, relist on expiry, retry with backoff) in its own task, converts objects to the
//! scheduler's compact form there — JSON decoding and parsing stay off the scheduling
//! task — and sends the results down one channel.

use std::collections::HashSet;
use std::pin::pin;
use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use crate::model::{Budget, NodeInfo, PodInfo};
use crate::objects::SchedPod;
use crate::plugins::default_spread::{PodSelector, SelectorKind};
use crate::selector::LabelSelector;
use crate::selector::Labels;

/// What the scheduling task learns from the watches and from its own binding tasks.
#[derive(Debug)]
pub enum Input {
    Node(NodeInfo),
    NodeGone(String),
    /// A relist of nodes finished: these are all the nodes there are.
    NodesListed(HashSet<String>),
    Pod(Arc<PodInfo>),
    PodGone(String),
    PodsListed(HashSet<String>),
    Namespace(String, Labels),
    NamespaceGone(String),
    NamespacesListed(HashSet<String>),
    /// A PodDisruptionBudget, by uid.
    Budget(String, Budget),
    BudgetGone(String),
    BudgetsListed(HashSet<String>),
    /// A Service or controller that selects pods, by uid (default spreading).
    Selector(String, SelectorKind, PodSelector),
    SelectorGone(String),
    SelectorsListed(SelectorKind, HashSet<String>),
    /// A binding succeeded.
    Bound(String),
    /// A binding failed; `retry` is false when the pod is gone or bound elsewhere.
    BindFailed {
        uid: String,
        retry: bool,
        error: String,
    },
}

/// Follows `api`, turning each object into inputs with `convert` and `gone`.
async fn follow<K, C, G, L>(
    api: Api<K>,
    config: watcher::Config,
    tx: UnboundedSender<Input>,
    convert: C,
    gone: G,
    listed: L,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    C: Fn(&K) -> Input,
    G: Fn(&K) -> Input,
    L: Fn(HashSet<String>) -> Input,
    K::DynamicType: Default,
{
    let mut stream = pin!(watcher(api, config).default_backoff());
    let mut relist: Option<HashSet<String>> = None;
    let key = |object: &K| {
        let meta = object.meta();
        meta.uid.clone().filter(|_| meta.namespace.is_some()).or_else(|| meta.name.clone()).unwrap_or_default()
    };
    loop {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(e) => {
                warn!(kind = %K::kind(&Default::default()), error = %e, "scheduler watch failed; retrying");
                continue;
            }
        };
        let input = match event {
            Event::Init => {
                relist = Some(HashSet::new());
                continue;
            }
            Event::InitApply(object) => {
                if let Some(seen) = &mut relist {
                    seen.insert(key(&object));
                }
                convert(&object)
            }
            Event::InitDone => listed(relist.take().unwrap_or_default()),
            Event::Apply(object) => convert(&object),
            Event::Delete(object) => gone(&object),
        };
        if tx.send(input).is_err() {
            return;
        }
    }
}

pub async fn nodes(client: Client, tx: UnboundedSender<Input>) {
    follow(
        Api::<Node>::all(client),
        watcher::Config::default(),
        tx,
        |node| Input::Node(NodeInfo::from_node(node)),
        |node| Input::NodeGone(node.metadata.name.clone().unwrap_or_default()),
        Input::NodesListed,
    )
    .await
}

pub async fn pods(client: Client, tx: UnboundedSender<Input>) {
    follow(
        Api::<SchedPod>::all(client),
        watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed"),
        tx,
        |pod| Input::Pod(Arc::new(PodInfo::from_sched_pod(pod))),
        |pod| Input::PodGone(pod.metadata.uid.clone().unwrap_or_default()),
        Input::PodsListed,
    )
    .await
}

pub async fn namespaces(client: Client, tx: UnboundedSender<Input>) {
    follow(
        Api::<Namespace>::all(client),
        watcher::Config::default(),
        tx,
        |ns| {
            Input::Namespace(
                ns.metadata.name.clone().unwrap_or_default(),
                ns.metadata.labels.clone().unwrap_or_default(),
            )
        },
        |ns| Input::NamespaceGone(ns.metadata.name.clone().unwrap_or_default()),
        Input::NamespacesListed,
    )
    .await
}

pub async fn budgets(client: Client, tx: UnboundedSender<Input>) {
    follow(
        Api::<PodDisruptionBudget>::all(client),
        watcher::Config::default(),
        tx,
        |pdb| Input::Budget(pdb.metadata.uid.clone().unwrap_or_default(), Budget::from_pdb(pdb)),
        |pdb| Input::BudgetGone(pdb.metadata.uid.clone().unwrap_or_default()),
        Input::BudgetsListed,
    )
    .await
}

fn uid_of<K: kube::Resource>(object: &K) -> String {
    object.meta().uid.clone().unwrap_or_default()
}

/// Services, ReplicaSets and StatefulSets: what selects pods. (kube-scheduler also
/// watches ReplicationControllers, which skiff does not serve.)
pub async fn selectors(client: Client, tx: UnboundedSender<Input>) {
    let services = follow(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        tx.clone(),
        |svc| {
            let selector = PodSelector::Service {
                namespace: svc.metadata.namespace.clone().unwrap_or_default(),
                labels: svc.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default(),
            };
            Input::Selector(uid_of(svc), SelectorKind::Service, selector)
        },
        |svc| Input::SelectorGone(uid_of(svc)),
        |uids| Input::SelectorsListed(SelectorKind::Service, uids),
    );
    let replica_sets = follow(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
        tx.clone(),
        |rs| {
            let selector = LabelSelector::from_api_lossy(rs.spec.as_ref().map(|s| &s.selector));
            Input::Selector(uid_of(rs), SelectorKind::ReplicaSet, PodSelector::Controller(selector))
        },
        |rs| Input::SelectorGone(uid_of(rs)),
        |uids| Input::SelectorsListed(SelectorKind::ReplicaSet, uids),
    );
    let stateful_sets = follow(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
        tx.clone(),
        |ss| {
            let selector = LabelSelector::from_api_lossy(ss.spec.as_ref().map(|s| &s.selector));
            Input::Selector(uid_of(ss), SelectorKind::StatefulSet, PodSelector::Controller(selector))
        },
        |ss| Input::SelectorGone(uid_of(ss)),
        |uids| Input::SelectorsListed(SelectorKind::StatefulSet, uids),
    );
    futures::join!(services, replica_sets, stateful_sets);
}
