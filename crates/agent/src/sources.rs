//! The API objects a pod's containers and volumes read from (ConfigMaps, Secrets,
//! PersistentVolumeClaims and their PersistentVolumes, the namespace's Services), fetched
//! once per sync into plain maps. Env and volume code are then pure functions of the pod
//! and these maps, so their rules are tested without a server.
//!
//! ConfigMaps and Secrets are read with a GET when a pod references them (the kubelet's
//! `Get` strategy); Services come from the agent's shared cache, so that the service-link
//! variables of every pod start cost no request.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service, Volume};
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::Client;

use crate::error::status_code;

/// Objects a pod references, by name; `None` for one that does not exist.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    pub secrets: BTreeMap<String, Option<Secret>>,
    pub claims: BTreeMap<String, Option<PersistentVolumeClaim>>,
    /// PersistentVolumes by name (those the claims are bound to).
    pub volumes: BTreeMap<String, Option<PersistentVolume>>,
    /// Services of the pod's namespace, and the `kubernetes` Service of `default`.
    pub services: Vec<Service>,
}

/// Names a pod refers to, collected from its containers' env and its volumes.
#[derive(Default)]
struct Names {
    config_maps: BTreeSet<String>,
    secrets: BTreeSet<String>,
    claims: BTreeSet<String>,
}

fn volume_names(volume: &Volume, names: &mut Names) {
    if let Some(cm) = &volume.config_map {
        names.config_maps.insert(cm.name.clone());
    }
    if let Some(secret) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
        names.secrets.insert(secret);
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        names.claims.insert(claim.claim_name.clone());
    }
    for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        if let Some(cm) = &source.config_map {
            names.config_maps.insert(cm.name.clone());
        }
        if let Some(secret) = &source.secret {
            names.secrets.insert(secret.name.clone());
        }
    }
}

fn referenced(pod: &Pod) -> Names {
    let mut names = Names::default();
    let Some(spec) = &pod.spec else { return names };
    for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        for from in container.env_from.iter().flatten() {
            if let Some(cm) = &from.config_map_ref {
                names.config_maps.insert(cm.name.clone());
            }
            if let Some(secret) = &from.secret_ref {
                names.secrets.insert(secret.name.clone());
            }
        }
        for value_from in container.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
            if let Some(key) = &value_from.config_map_key_ref {
                names.config_maps.insert(key.name.clone());
            }
            if let Some(key) = &value_from.secret_key_ref {
                names.secrets.insert(key.name.clone());
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        volume_names(volume, &mut names);
    }
    names
}

/// GETs an object, mapping 404 to `None`.
async fn get<K>(api: &Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get(name).await {
        Ok(object) => Ok(Some(object)),
        Err(e) if status_code(&e) == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Fetches what `pod` references. `services` is the agent's Service cache, if it keeps one.
pub async fn fetch(client: &Client, services: Option<&Store<Service>>, pod: &Pod) -> Result<Sources, kube::Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let names = referenced(pod);
    let mut sources = Sources::default();
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    for name in names.config_maps {
        let found = get(&config_maps, &name).await?;
        sources.config_maps.insert(name, found);
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    for name in names.secrets {
        let found = get(&secrets, &name).await?;
        sources.secrets.insert(name, found);
    }
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace);
    let volumes = Api::<PersistentVolume>::all(client.clone());
    for name in names.claims {
        let claim = get(&claims, &name).await?;
        if let Some(volume) = claim.as_ref().and_then(|c| c.spec.as_ref()).and_then(|s| s.volume_name.clone()) {
            let found = get(&volumes, &volume).await?;
            sources.volumes.insert(volume, found);
        }
        sources.claims.insert(name, claim);
    }
    if let Some(store) = services {
        let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
        sources.services = store
            .state()
            .iter()
            .filter(|s| {
                let ns = s.metadata.namespace.as_deref();
                let name = s.metadata.name.as_deref();
                (links && ns == Some(namespace)) || (ns == Some("default") && name == Some("kubernetes"))
            })
            .map(|s| (**s).clone())
            .collect();
    }
    Ok(sources)
}
