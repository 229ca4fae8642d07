use k8s_openapi::api::core::v1::*;

use crate::strategy::KindRules;

impl KindRules for Namespace {}
impl KindRules for Pod {}
impl KindRules for Service {}
impl KindRules for Endpoints {}
impl KindRules for ConfigMap {}
impl KindRules for Secret {}
impl KindRules for ServiceAccount {}
impl KindRules for Event {}
impl KindRules for Node {}
impl KindRules for PersistentVolume {}
impl KindRules for PersistentVolumeClaim {}
impl KindRules for LimitRange {}
impl KindRules for ResourceQuota {}
