//! ImageLocality: prefers nodes that already hold the pod's images, weighing each image by
//! its size and by how widely it is spread (an image on every node says little).

use crate::cache::Cache;
use crate::framework::MAX_SCORE;
use crate::model::{NodeInfo, PodInfo};

const MB: i64 = 1024 * 1024;
/// Below this the images present do not count (kube-scheduler's 23 MB).
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, what counts at most (1000 MB).
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Whether any node holds any image at all (else every node scores 0).
pub fn applies(cache: &Cache, pod: &PodInfo) -> bool {
    pod.images.iter().any(|image| cache.images_spread(image) > 0)
}

pub fn score(cache: &Cache, pod: &PodInfo, node: &NodeInfo) -> i64 {
    let total = cache.node_count().max(1) as f64;
    let sum: i64 = pod
        .images
        .iter()
        .filter_map(|image| {
            let size = *node.images.get(image)?;
            let spread = f64::from(cache.images_spread(image)) / total;
            Some((size as f64 * spread) as i64)
        })
        .sum();
    let max = MAX_CONTAINER_THRESHOLD * pod.images.len().max(1) as i64;
    let clamped = sum.clamp(MIN_THRESHOLD, max);
    MAX_SCORE * (clamped - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{cache, id, node, pod};
    use serde_json::json;

    #[test]
    fn nodes_with_the_image_score_higher() {
        let with = |size: i64| json!({"status": {"images": [{"names": ["registry.local/big:1"], "sizeBytes": size}]}});
        let c = cache(
            vec![
                node("has", "1", "1Gi", json!({}), with(500 * MB)),
                node("also", "1", "1Gi", json!({}), with(500 * MB)),
                node("none", "1", "1Gi", json!({}), json!({})),
                node("none2", "1", "1Gi", json!({}), json!({})),
            ],
            vec![],
        );
        let p = pod("p", json!({}), json!({"containers": [{"name": "c", "image": "registry.local/big:1"}]}));
        assert!(applies(&c, &p));
        let has = c.node(id(&c, "has")).info.as_ref().unwrap();
        let none = c.node(id(&c, "none")).info.as_ref().unwrap();
        // 500 MB × 2/4 nodes = 250 MB → (250 - 23) / (1000 - 23) of 100.
        assert_eq!(score(&c, &p, has), 100 * (250 * MB - MIN_THRESHOLD) / (MAX_CONTAINER_THRESHOLD - MIN_THRESHOLD));
        assert_eq!(score(&c, &p, none), 0);
        assert!(!applies(&c, &pod("q", json!({}), json!({}))));
    }
}
