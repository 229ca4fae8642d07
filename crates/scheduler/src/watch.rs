//! Watches that feed the scheduler: nodes, pods (all but finished ones, as
//! kube-scheduler's informer does), namespaces and PodDisruptionBudgets (for preemption). Each runs kube-rs' watcher (list, then
//! watch, relist on expiry, retry with backoff) in its own task, converts objects to the
//! scheduler's compact form there — JSON decoding and parsing stay off the scheduling
//! task — and sends the results down one channel.

use std::collections::HashSet;
use std::pin::pin;
use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use crate::model::{Budget, NodeInfo, PodInfo};
use crate::objects::SchedPod;
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
                warn!(error = %e, "scheduler watch failed; retrying");
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
