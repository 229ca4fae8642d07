//! The `kube-system/kube-dns` Service: the cluster DNS address pods are given
//! (`--cluster-dns`, 10.43.0.10), without a selector, with Endpoints and an EndpointSlice
//! naming where the DNS server really listens (the server's node address and DNS port),
//! so the service proxy forwards 10.43.0.10:53 there.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kube-dns";
/// Who manages the EndpointSlice (not the EndpointSlice controller, which leaves
/// selector-less Services' slices alone).
pub const MANAGER: &str = "skiff-dns";
pub const DEFAULT_CLUSTER_DNS: &str = "10.43.0.10";

/// The Service, applied as this server's field manager.
pub fn service(cluster_ip: IpAddr) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": NAME, "namespace": NAMESPACE, "labels": {
            "k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS" } },
        "spec": {
            "clusterIP": cluster_ip.to_string(),
            "clusterIPs": [cluster_ip.to_string()],
            "ports": [
                { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53 },
                { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53 },
            ],
        },
    })
}

pub fn endpoints(server: SocketAddr) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": { "name": NAME, "namespace": NAMESPACE, "labels": { "k8s-app": "kube-dns" } },
        "subsets": [{
            "addresses": [{ "ip": server.ip().to_string() }],
            "ports": [
                { "name": "dns", "port": server.port(), "protocol": "UDP" },
                { "name": "dns-tcp", "port": server.port(), "protocol": "TCP" },
            ],
        }],
    })
}

pub fn endpoint_slice(server: SocketAddr) -> serde_json::Value {
    let family = if server.is_ipv4() { "IPv4" } else { "IPv6" };
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": NAME, "namespace": NAMESPACE, "labels": {
            "k8s-app": "kube-dns",
            "kubernetes.io/service-name": NAME,
            "endpointslice.kubernetes.io/managed-by": MANAGER } },
        "addressType": family,
        "endpoints": [{ "addresses": [server.ip().to_string()], "conditions": { "ready": true, "serving": true, "terminating": false } }],
        "ports": [
            { "name": "dns", "port": server.port(), "protocol": "UDP" },
            { "name": "dns-tcp", "port": server.port(), "protocol": "TCP" },
        ],
    })
}

/// Creates or updates the kube-dns Service, Endpoints and EndpointSlice.
pub async fn ensure(client: &Client, cluster_ip: IpAddr, server: SocketAddr) -> Result<(), kube::Error> {
    let params = PatchParams::apply(MANAGER).force();
    Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .patch(NAME, &params, &Patch::Apply(service(cluster_ip)))
        .await?;
    Api::<Endpoints>::namespaced(client.clone(), NAMESPACE)
        .patch(NAME, &params, &Patch::Apply(endpoints(server)))
        .await?;
    Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE)
        .patch(NAME, &params, &Patch::Apply(endpoint_slice(server)))
        .await?;
    Ok(())
}
