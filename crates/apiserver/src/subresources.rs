//! Subresources with their own shapes: pods/binding and the scale subresource of
//! workloads.

use serde_json::{json, Value};
use skiff_api::{ApiError, FieldError, Target};

use crate::meta;
use crate::patch::{self, PatchType};
use crate::request::Query;
use crate::rest::{parse_rv, Addr, Api, Reply, WriteKind, WriteOptions};

impl Api {
    /// POST pods/NAME/binding: assigns the pod to a node, once.
    pub async fn bind(&self, addr: &Addr<'_>, binding: Value, options: &WriteOptions) -> Result<Reply, ApiError> {
        let node = binding["target"]["name"].as_str().unwrap_or_default().to_string();
        if node.is_empty() {
            return Err(ApiError::Invalid(
                Target::new("", "Binding", addr.name),
                vec![FieldError::required("target.name", "")],
            ));
        }
        let annotations = binding["metadata"]["annotations"].clone();
        let pod = addr.name.to_string();
        self.write_with_retry(
            addr,
            None,
            options,
            |old| {
                if meta::is_deleting(old) {
                    return Err(ApiError::Conflict(
                        Target::new("", "pods", &pod),
                        format!("pod {pod} is being deleted, cannot be assigned to a host"),
                    ));
                }
                if let Some(current) = old["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                    return Err(ApiError::Conflict(
                        Target::new("", "pods", &pod),
                        format!("pod {pod} is already assigned to node {current:?}"),
                    ));
                }
                let mut new = old.clone();
                new["spec"]["nodeName"] = json!(node);
                if let Some(extra) = annotations.as_object() {
                    let m = meta::meta_mut(&mut new);
                    let target = m.entry("annotations").or_insert_with(|| json!({}));
                    for (k, v) in extra {
                        target[k] = v.clone();
                    }
                }
                set_condition(&mut new, "PodScheduled", "True");
                Ok(new)
            },
            WriteKind::Binding,
        )
        .await?;
        Ok(Reply::created(
            json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
        ))
    }

    /// GET .../scale
    pub async fn get_scale(&self, addr: &Addr<'_>) -> Result<Reply, ApiError> {
        let reply = self.get(addr, &Query::default()).await?;
        Ok(Reply::ok(scale_of(&reply.body)))
    }

    /// PUT (a Scale, `kind` None) or PATCH (a parsed patch of `kind`) on .../scale:
    /// changes spec.replicas only.
    pub async fn update_scale(
        &self,
        addr: &Addr<'_>,
        kind: Option<PatchType>,
        parsed: Value,
        options: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        let precondition = match kind {
            None => parsed["metadata"]["resourceVersion"].as_str().map(parse_rv).transpose()?,
            Some(_) => None,
        };
        let name = addr.name.to_string();
        let reply = self
            .write_with_retry(
                addr,
                precondition,
                options,
                |old| {
                    let scale = match kind {
                        Some(kind) => patch::apply(
                            patch::merge_schema("autoscaling", "v1", "Scale"),
                            kind,
                            &scale_of(old),
                            &parsed,
                        )?,
                        None => parsed.clone(),
                    };
                    // A missing replicas is 0: protobuf clients omit zero values.
                    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
                    if replicas < 0 {
                        return Err(ApiError::Invalid(
                            Target::new("autoscaling", "Scale", &name),
                            vec![FieldError::invalid("spec.replicas", replicas, "must be greater than or equal to 0")],
                        ));
                    }
                    let mut new = old.clone();
                    new["spec"]["replicas"] = json!(replicas);
                    Ok(new)
                },
                WriteKind::Scale,
            )
            .await?;
        Ok(Reply::ok(scale_of(&reply.body)))
    }
}

/// The autoscaling/v1 Scale view of a workload.
fn scale_of(object: &Value) -> Value {
    let m = &object["metadata"];
    let selector = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|labels| {
            labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": { "replicas": object["spec"]["replicas"].as_i64().unwrap_or(0) },
        "status": { "replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector },
    })
}

/// Sets a pod condition's status, adding the condition if missing.
fn set_condition(pod: &mut Value, kind: &str, status: &str) {
    let now = meta::now_rfc3339();
    let conditions = &mut pod["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else { return };
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(existing) if existing["status"] == status => {}
        Some(existing) => {
            existing["status"] = json!(status);
            existing["lastTransitionTime"] = json!(now);
        }
        None => list.push(json!({ "type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now })),
    }
}
