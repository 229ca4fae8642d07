use k8s_openapi::api::batch::v1::*;

use crate::strategy::KindRules;

impl KindRules for Job {}
impl KindRules for CronJob {}
