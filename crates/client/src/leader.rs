//! Leader election through a coordination.k8s.io Lease, as client-go's leaderelection
//! does: a candidate takes the Lease when it is free or its holder has not renewed it for
//! a whole lease duration — measured on the candidate's own clock, from when it last saw
//! the record change, so clocks need not agree — and the leader renews it every retry
//! period, stepping down when it could not renew within the renew deadline. Writes are
//! compare-and-swap on resourceVersion, so two candidates cannot both win.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::time::Instant;
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per candidate (hostname and a random suffix).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Lease kube-system/NAME with client-go's defaults (15 s / 10 s / 2 s), as
    /// kube-scheduler (`kube-scheduler`) and kube-controller-manager use them.
    pub fn in_kube_system(name: &str, identity: String) -> Self {
        LeaderConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A candidate's view of the Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaderConfig,
    /// The holder and renew time last seen, and when (on our clock) they were first seen.
    observed: Option<(String, Option<MicroTime>, Instant)>,
}

impl Elector {
    pub fn new(client: Client, config: LeaderConfig) -> Self {
        Elector { api: Api::namespaced(client, &config.namespace), config, observed: None }
    }

    fn record(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        let same_holder = previous.and_then(|s| s.holder_identity.as_deref()) == Some(self.config.identity.as_str());
        let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs() as i32),
            acquire_time: if same_holder { previous.and_then(|s| s.acquire_time.clone()) } else { Some(now.clone()) },
            renew_time: Some(now),
            lease_transitions: Some(if same_holder || previous.is_none() { transitions } else { transitions + 1 }),
            ..LeaseSpec::default()
        }
    }

    /// One attempt to take or keep the Lease; true when we hold it afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.config.name.clone()), ..ObjectMeta::default() },
                spec: Some(self.record(None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let seen = (holder.clone(), spec.renew_time.clone());
        let first_seen = match &self.observed {
            Some((h, r, at)) if (h, r) == (&seen.0, &seen.1) => *at,
            _ => now,
        };
        self.observed = Some((seen.0, seen.1, first_seen));
        let duration =
            spec.lease_duration_seconds.map_or(self.config.lease_duration, |s| Duration::from_secs(s.max(0) as u64));
        let held_by_other = !holder.is_empty() && holder != self.config.identity;
        if held_by_other && now < first_seen + duration {
            return Ok(false);
        }
        lease.spec = Some(self.record(Some(&spec)));
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(updated) => {
                let renew = updated.spec.and_then(|s| s.renew_time);
                self.observed = Some((self.config.identity.clone(), renew, now));
                Ok(true)
            }
            // Someone else wrote it first.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => warn!(lease = self.config.name, error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the Lease every retry period; returns when it could not be renewed within
    /// the renew deadline (leadership is lost).
    pub async fn keep(&mut self) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => return,
                Err(e) => warn!(lease = self.config.name, error = %e, "renewing the leader lease failed"),
            }
            if last_renewed.elapsed() >= self.config.renew_deadline {
                return;
            }
        }
    }
}

/// Runs `work` while this candidate leads; when leadership is lost, `work` is dropped
/// (stopping it) and the candidate waits to lead again. Returns only if `work` returns.
pub async fn run_as_leader<F, Fut, T>(client: Client, config: LeaderConfig, mut work: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let mut elector = Elector::new(client, config.clone());
    loop {
        elector.acquire().await;
        info!(lease = config.name, identity = config.identity, "became leader");
        tokio::select! {
            result = work() => return result,
            () = elector.keep() => warn!(lease = config.name, identity = config.identity, "lost leadership; standing by"),
        }
    }
}
