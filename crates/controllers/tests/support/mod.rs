//! A cluster for controller tests: the in-process API server, the scheduler, simulated
//! nodes (skiff-agent's simulated runtime: bound pods go Running and Ready), and the
//! controller manager — each a real client of the API, as in `skiff server`.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use skiff_agent::config::{self, NodeTemplate, Timing as AgentTiming};
use skiff_agent::runtime::simulated::{Behaviour, SimulatedRuntime};
use skiff_agent::{Agent, NodeHandle};
use skiff_controllers::Timing;
use skiff_testkit::TestServer;
use tokio::task::JoinHandle;

pub use skiff_testkit::{eventually, json};

pub struct Cluster {
    pub server: TestServer,
    pub client: Client,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Cluster {
    /// A cluster of `nodes` simulated nodes named `node-0`, `node-1`, ...
    pub async fn start(nodes: usize) -> Self {
        Self::start_with(nodes, Timing::default()).await
    }

    pub async fn start_with(nodes: usize, timing: Timing) -> Self {
        Self::start_without(nodes, timing, &[]).await
    }

    /// A cluster whose controller manager does not run the `disabled` controllers (by
    /// name), for tests that play a controller's part themselves.
    pub async fn start_without(nodes: usize, timing: Timing, disabled: &[&str]) -> Self {
        let disabled: Vec<String> = disabled.iter().map(|name| name.to_string()).collect();
        Self::start_configured(nodes, move |config| {
            config.timing = timing;
            config.disabled = disabled;
        })
        .await
    }

    /// A cluster whose controller manager's configuration `configure` adjusts (e.g. the
    /// cluster CIDR).
    pub async fn start_configured(nodes: usize, configure: impl FnOnce(&mut skiff_controllers::Config)) -> Self {
        let server = TestServer::start().await;
        let client = skiff_client::connect(server.kubeconfig(), None).await.expect("client");
        let mut cluster = Cluster { server, client, tasks: Vec::new() };
        if nodes > 0 {
            cluster.add_nodes("node", nodes, NodeTemplate::simulated());
        }
        let scheduler = skiff_scheduler::Config { leader_election: None, ..Default::default() };
        let client = cluster.client.clone();
        cluster.tasks.push(tokio::spawn(async move {
            let _ = skiff_scheduler::run(client, scheduler).await;
        }));
        let root_ca = cluster.server.server.pki.ca_cert_pem.clone();
        let mut controllers = skiff_controllers::Config {
            leader_election: None,
            timing: Timing::default(),
            root_ca,
            disabled: Vec::new(),
            cluster_cidr: Some(skiff_controllers::nodeipam::ClusterCidr::default()),
        };
        configure(&mut controllers);
        cluster.tasks.push(tokio::spawn(skiff_controllers::run(cluster.client.clone(), controllers)));
        cluster
    }

    /// Adds `count` simulated nodes named `prefix-i`; the handle stops their agent.
    pub fn add_nodes(&mut self, prefix: &str, count: usize, template: NodeTemplate) -> NodeGroup {
        // Each group of nodes takes its own part of the pod address space.
        let base = prefix.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 200;
        let cidr = format!("10.{}.0.0/16", 10 + base).parse().expect("cidr");
        let ids = config::simulated_identities(prefix, count, cidr, 24).expect("identities");
        let handles = ids
            .into_iter()
            .map(|id| NodeHandle::new(id.clone(), Arc::new(SimulatedRuntime::new(id.pod_cidr, Behaviour::default()))))
            .collect();
        let agent = Agent::new(self.client.clone(), template, AgentTiming::default(), handles, 16);
        let task = tokio::spawn(async move {
            let _ = agent.run().await;
        });
        let group = NodeGroup(task.abort_handle());
        self.tasks.push(task);
        group
    }

    /// A client that does not retry 429 answers itself (kube-rs' default client retries
    /// them for minutes), for tests that expect one.
    pub async fn client_without_retries(&self) -> Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.server.kubeconfig()).expect("kubeconfig");
        let options = kube::config::KubeConfigOptions::default();
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("config");
        config.default_retry = false;
        Client::try_from(config).expect("client")
    }

    /// Runs the real kubectl against the cluster, off the async runtime (the controllers
    /// and the agent keep running while it waits).
    pub async fn kubectl(&self, args: &[&str]) -> std::process::Output {
        let kubeconfig = self.server.kubeconfig().to_path_buf();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            skiff_testkit::kubectl(&kubeconfig, &args, None)
        })
        .await
        .expect("kubectl task")
    }

    /// kubectl's stdout, failing the test when kubectl fails.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        skiff_testkit::ok(&self.kubectl(args).await)
    }

    pub fn api<K>(&self, namespace: &str) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        kube::Api::namespaced(self.client.clone(), namespace)
    }
}

/// A group of simulated nodes: stopping it stops their agent (no more Lease renewals or
/// pod updates), as if the machines were cut off. Adding nodes of the same names again
/// brings them back.
pub struct NodeGroup(tokio::task::AbortHandle);

impl NodeGroup {
    pub fn stop(&self) {
        self.0.abort();
    }
}

/// Generous: controllers, scheduler and agent share a loaded 2-core machine with the test.
pub const PATIENCE: Duration = Duration::from_secs(30);
