use k8s_openapi::api::apps::v1::*;

use crate::strategy::KindRules;

impl KindRules for Deployment {}
impl KindRules for ReplicaSet {}
impl KindRules for StatefulSet {}
impl KindRules for DaemonSet {}
impl KindRules for ControllerRevision {}
