//! NodeResourcesBalancedAllocation: prefers nodes where CPU and memory would be used in
//! similar proportions after placing the pod (1 - standard deviation of the fractions).
//! Pods that request neither are not scored by it.

use crate::cache::NodeSlot;
use crate::framework::MAX_SCORE;
use crate::model::{NodeInfo, PodInfo};

/// Whether the plugin scores this pod at all.
pub fn applies(pod: &PodInfo) -> bool {
    let r = &pod.requests.requests;
    r.milli_cpu > 0 || r.memory > 0
}

pub fn score(pod: &PodInfo, slot: &NodeSlot, node: &NodeInfo) -> i64 {
    let wanted = &pod.requests.requests;
    let pairs = [
        (slot.requested.milli_cpu + wanted.milli_cpu, node.allocatable.milli_cpu),
        (slot.requested.memory + wanted.memory, node.allocatable.memory),
    ];
    let fraction = |(requested, capacity): (i64, i64)| (requested as f64 / capacity as f64).min(1.0);
    // With two resources the standard deviation is half their difference; with one, zero.
    let deviation = match pairs {
        [cpu, memory] if cpu.1 > 0 && memory.1 > 0 => ((fraction(cpu) - fraction(memory)) / 2.0).abs(),
        _ => 0.0,
    };
    ((1.0 - deviation) * MAX_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{cache, id, node, pod, sized};
    use serde_json::json;

    #[test]
    fn balanced_use_scores_higher() {
        let c = cache(
            vec![node("cpu-heavy", "4", "8Gi", json!({}), json!({})), node("even", "4", "8Gi", json!({}), json!({}))],
            vec![(sized("a", "3", "0"), "cpu-heavy"), (sized("b", "1", "2Gi"), "even")],
        );
        let incoming = sized("p", "1", "2Gi");
        let heavy = id(&c, "cpu-heavy");
        let even = id(&c, "even");
        // cpu-heavy: cpu 4/4 = 1, memory 2/8 = 0.25 → 1 - 0.375 = 62; even: 0.5 and 0.5 → 100.
        assert_eq!(score(&incoming, c.node(heavy), c.node(heavy).info.as_ref().unwrap()), 62);
        assert_eq!(score(&incoming, c.node(even), c.node(even).info.as_ref().unwrap()), 100);
        assert!(!applies(&pod("b", json!({}), json!({}))));
        assert!(applies(&incoming));
    }
}
