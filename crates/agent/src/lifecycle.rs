//! Container lifecycle hooks: postStart runs right after a container starts (its failure
//! kills the container, event FailedPostStartHook); preStop runs before a container is
//! stopped, inside the grace period, whose remainder is then the stop timeout.
//! Handlers are exec (through the runtime), httpGet, tcpSocket and sleep.

use std::time::Duration;

use k8s_openapi::api::core::v1::LifecycleHandler;

use crate::probes::{run_handler, Handler, Outcome, Target};

/// Runs a hook handler, for at most `timeout`.
pub async fn run_hook(hook: &LifecycleHandler, target: &Target, timeout: Duration) -> Outcome {
    if let Some(sleep) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    let handler = Handler {
        exec: hook.exec.as_ref(),
        http_get: hook.http_get.as_ref(),
        tcp_socket: hook.tcp_socket.as_ref(),
        grpc: None,
    };
    match tokio::time::timeout(timeout, run_handler(&handler, target, timeout)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("hook timed out after {}s", timeout.as_secs())),
    }
}
