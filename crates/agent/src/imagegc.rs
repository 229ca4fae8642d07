//! Image garbage collection, with the kubelet's semantics (its image GC manager): every
//! period the image filesystem's usage is read; at or above the high threshold, unused
//! images are removed, least recently used first (then first detected first), until the
//! usage is back at the low threshold. An image is never removed while a container the
//! runtime knows (running or exited) uses it, when it is pinned (the sandbox image), or
//! when it was first seen less than the minimum age ago (it may have just been pulled
//! for a container about to start).
//!
//! The disk reading is the boundary with the OS ([`ImageFs`]): statvfs of the mountpoint
//! CRI ImageFsInfo reports in production ([`CriImageFs`]), anything in tests. When not enough can be freed the
//! Node gets a FreeDiskSpaceFailed warning, and a repeated failure ImageGCFailed, as the
//! kubelet records them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ObjectReference;
use skiff_client::events::Recorder;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::runtime::cri::CriRuntime;
use crate::runtime::{ContainerFilter, Image, Runtime, RuntimeError};

/// When to collect, as the kubelet's flags of the same meaning.
#[derive(Clone, Debug)]
pub struct GcPolicy {
    /// `--image-gc-high-threshold`: usage (percent) at or above which images are removed;
    /// 100 turns collection off.
    pub high_threshold_percent: u8,
    /// `--image-gc-low-threshold`: usage (percent) collection brings the disk back to.
    pub low_threshold_percent: u8,
    /// `--image-minimum-gc-age`: images detected more recently than this are kept.
    pub min_age: Duration,
    /// How often usage is checked (the kubelet's ImageGCPeriod, 5 minutes).
    pub period: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
            period: Duration::from_secs(300),
        }
    }
}

impl GcPolicy {
    /// The kubelet's validation of the thresholds, with its messages.
    pub fn validate(&self) -> Result<(), String> {
        let (high, low) = (self.high_threshold_percent, self.low_threshold_percent);
        if high > 100 {
            return Err(format!("--image-gc-high-threshold {high} must be between 0 and 100, inclusive"));
        }
        if low > 100 {
            return Err(format!("--image-gc-low-threshold {low} must be between 0 and 100, inclusive"));
        }
        if low >= high {
            return Err(format!("--image-gc-low-threshold {low} must be less than --image-gc-high-threshold {high}"));
        }
        Ok(())
    }
}

/// A Go duration flag value (`2m`, `1h30m`, `90s`) as a Duration; negative is an error.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let nanos = skiff_api::protobuf::parse_duration(text)?;
    u64::try_from(nanos).map(Duration::from_nanos).map_err(|_| format!("invalid duration {text:?}: negative"))
}

/// The size and free space of the filesystem holding the images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStats {
    pub capacity_bytes: u64,
    pub available_bytes: u64,
}

impl FsStats {
    /// Usage in whole percent, rounded as the kubelet rounds it (100 − ⌊available·100/capacity⌋).
    pub fn usage_percent(&self) -> u64 {
        100u64.saturating_sub(self.available_bytes.saturating_mul(100) / self.capacity_bytes.max(1))
    }
}

/// Where the image filesystem's usage comes from.
#[async_trait]
pub trait ImageFs: Send + Sync + 'static {
    async fn stats(&self) -> std::io::Result<FsStats>;
}

/// statvfs(2) of the filesystem holding `path`.
pub fn statvfs(path: &Path) -> std::io::Result<FsStats> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let fragment = stat.fragment_size();
    Ok(FsStats {
        capacity_bytes: stat.blocks().saturating_mul(fragment),
        available_bytes: stat.blocks_available().saturating_mul(fragment),
    })
}

/// The runtime's image filesystem: the mountpoint CRI ImageFsInfo reports, measured with
/// statvfs (CRI reports only what the images use, not the disk's size).
pub struct CriImageFs {
    pub runtime: Arc<CriRuntime>,
}

#[async_trait]
impl ImageFs for CriImageFs {
    async fn stats(&self) -> std::io::Result<FsStats> {
        let mountpoint = self.runtime.image_fs_mountpoint().await.map_err(std::io::Error::other)?;
        statvfs(&mountpoint)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("failed to get image filesystem stats: {0}")]
    Stats(#[source] std::io::Error),
    #[error("invalid capacity 0 on image filesystem")]
    NoCapacity,
    #[error("failed to list images and containers: {0}")]
    Runtime(#[from] RuntimeError),
    #[error(
        "Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free."
    )]
    NotEnoughFreed { wanted: u64, freed: u64 },
    #[error("wanted to free {wanted} bytes, but freed {freed} bytes space with errors in image deletion: [{errors}]")]
    Deletion { wanted: u64, freed: u64, errors: String },
}

/// What the collector remembers of an image between passes.
#[derive(Clone, Debug)]
struct Record {
    first_detected: Instant,
    /// When a container was last seen using it (None: never while the agent ran).
    last_used: Option<Instant>,
    size: u64,
}

/// The order images are removed in: least recently used first (never used before any
/// use), ties by first detection, then by ID so the order is stable.
fn eviction_order(candidates: &mut [(String, Record)]) {
    candidates.sort_by(|(a_id, a), (b_id, b)| {
        (a.last_used, a.first_detected, a_id).cmp(&(b.last_used, b.first_detected, b_id))
    });
}

/// The image garbage collector of one node.
pub struct ImageGc {
    runtime: Arc<dyn Runtime>,
    fs: Arc<dyn ImageFs>,
    policy: GcPolicy,
    /// Image names never collected (the sandbox image), besides those the runtime pins.
    pinned: Vec<String>,
    records: HashMap<String, Record>,
    passes: watch::Sender<u64>,
}

impl ImageGc {
    pub fn new(runtime: Arc<dyn Runtime>, fs: Arc<dyn ImageFs>, policy: GcPolicy) -> Self {
        ImageGc { runtime, fs, policy, pinned: Vec::new(), records: HashMap::new(), passes: watch::Sender::new(0) }
    }

    /// Never collects `image` (by name or ID).
    pub fn pinning(mut self, image: impl Into<String>) -> Self {
        self.pinned.push(image.into());
        self
    }

    /// The number of passes done so far, to wait for one.
    pub fn passes(&self) -> watch::Receiver<u64> {
        self.passes.subscribe()
    }

    fn is_pinned(&self, image: &Image) -> bool {
        image.pinned || self.pinned.iter().any(|name| *name == image.id || image.repo_tags.contains(name))
    }

    /// Updates the records from the runtime: new images are detected now, images used by
    /// any container are used now, removed ones are forgotten. Returns the images that may
    /// be collected (not in use, not pinned).
    async fn detect(&mut self, now: Instant) -> Result<Vec<(String, Record)>, GcError> {
        let images = self.runtime.list_images().await?;
        let containers = self.runtime.list_containers(&ContainerFilter::default()).await?;
        let used_refs: HashSet<&str> = containers.iter().map(|c| c.image_ref.as_str()).collect();
        let used_names: HashSet<&str> = containers.iter().map(|c| c.image.as_str()).collect();
        let present: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.records.retain(|id, _| present.contains(id.as_str()));
        let mut candidates = Vec::new();
        for image in &images {
            let record = self.records.entry(image.id.clone()).or_insert(Record {
                first_detected: now,
                last_used: None,
                size: image.size,
            });
            record.size = image.size;
            let in_use = used_refs.contains(image.id.as_str())
                || used_names.contains(image.id.as_str())
                || image.repo_tags.iter().any(|tag| used_names.contains(tag.as_str()));
            if in_use {
                record.last_used = Some(now);
                continue;
            }
            let record = record.clone();
            if !self.is_pinned(image) {
                candidates.push((image.id.clone(), record));
            }
        }
        Ok(candidates)
    }

    /// One pass: reads the usage and, at or above the high threshold, frees down to the
    /// low one. Returns the bytes freed.
    pub async fn collect(&mut self) -> Result<u64, GcError> {
        let outcome = self.collect_once().await;
        self.passes.send_modify(|n| *n += 1);
        outcome
    }

    async fn collect_once(&mut self) -> Result<u64, GcError> {
        let now = Instant::now();
        let stats = self.fs.stats().await.map_err(GcError::Stats)?;
        if stats.capacity_bytes == 0 {
            return Err(GcError::NoCapacity);
        }
        // Detect on every pass, so that first-detected and last-used times are known
        // before the disk fills.
        let mut candidates = self.detect(now).await?;
        let usage = stats.usage_percent();
        if usage < u64::from(self.policy.high_threshold_percent) {
            debug!(usage, "image filesystem below the high threshold");
            return Ok(0);
        }
        let low = u128::from(100 - self.policy.low_threshold_percent.min(100));
        let target = u64::try_from(u128::from(stats.capacity_bytes) * low / 100).unwrap_or(u64::MAX);
        let wanted = target.saturating_sub(stats.available_bytes);
        info!(
            usage,
            high = self.policy.high_threshold_percent,
            low = self.policy.low_threshold_percent,
            wanted,
            "disk usage on the image filesystem is over the high threshold, freeing down to the low threshold"
        );
        eviction_order(&mut candidates);
        let mut freed = 0u64;
        let mut errors = Vec::new();
        for (id, record) in candidates {
            if freed >= wanted {
                break;
            }
            if now.duration_since(record.first_detected) < self.policy.min_age {
                debug!(image = %id, "image younger than the minimum age; kept");
                continue;
            }
            info!(image = %id, size = record.size, "removing image to free bytes");
            match self.runtime.remove_image(&id).await {
                Ok(()) => {
                    self.records.remove(&id);
                    freed += record.size;
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(GcError::Deletion { wanted, freed, errors: errors.join(", ") });
        }
        if freed < wanted {
            return Err(GcError::NotEnoughFreed { wanted, freed });
        }
        Ok(freed)
    }

    /// Collects every period until dropped. Failures to free enough are recorded on the
    /// Node (`node`) as FreeDiskSpaceFailed; a failure that repeats the next pass as
    /// ImageGCFailed (the first may be stats not being ready yet, as the kubelet reasons).
    pub async fn run(mut self, recorder: Option<Recorder>, node: ObjectReference) {
        if self.policy.high_threshold_percent >= 100 {
            info!("image garbage collection is off (--image-gc-high-threshold=100)");
            return std::future::pending().await;
        }
        let mut tick = tokio::time::interval(self.policy.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failed_before = false;
        loop {
            tick.tick().await;
            let outcome = self.collect().await;
            let Some(recorder) = &recorder else {
                if let Err(e) = outcome {
                    warn!(error = %e, "image garbage collection failed");
                }
                continue;
            };
            match outcome {
                Ok(_) => failed_before = false,
                Err(e) => {
                    if let GcError::NotEnoughFreed { .. } = e {
                        recorder.warning(node.clone(), "FreeDiskSpace", "FreeDiskSpaceFailed", e.to_string());
                    }
                    if failed_before {
                        warn!(error = %e, "image garbage collection failed multiple times in a row");
                        recorder.warning(node.clone(), "ImageGC", "ImageGCFailed", e.to_string());
                    } else {
                        warn!(error = %e, "image garbage collection failed once");
                    }
                    failed_before = true;
                }
            }
        }
    }
}

/// The reference the kubelet's node events are recorded against (its UID is the name).
pub fn node_reference(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid: Some(name.into()),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::simulated::{Behaviour, SimulatedRuntime};

    #[test]
    fn usage_rounds_as_the_kubelet_and_thresholds_validate() {
        let stats = |available| FsStats { capacity_bytes: 1000, available_bytes: available };
        assert_eq!(stats(150).usage_percent(), 85);
        assert_eq!(stats(151).usage_percent(), 85);
        assert_eq!(stats(159).usage_percent(), 85);
        assert_eq!(stats(160).usage_percent(), 84);
        assert_eq!(stats(0).usage_percent(), 100);
        assert!(GcPolicy::default().validate().is_ok());
        let inverted = GcPolicy { low_threshold_percent: 90, ..GcPolicy::default() };
        assert_eq!(
            inverted.validate().unwrap_err(),
            "--image-gc-low-threshold 90 must be less than --image-gc-high-threshold 85"
        );
        assert!(GcPolicy { high_threshold_percent: 101, ..GcPolicy::default() }.validate().is_err());
        assert_eq!(parse_go_duration("2m0s").unwrap(), Duration::from_secs(120));
        assert!(parse_go_duration("-1s").is_err() && parse_go_duration("soon").is_err());
    }

    #[test]
    fn least_recently_used_go_first_then_first_detected() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let record =
            |detected, used: Option<u64>| Record { first_detected: at(detected), last_used: used.map(at), size: 1 };
        let mut candidates = vec![
            ("used-late".to_string(), record(0, Some(50))),
            ("never-new".to_string(), record(20, None)),
            ("used-early".to_string(), record(0, Some(10))),
            ("never-old".to_string(), record(5, None)),
        ];
        eviction_order(&mut candidates);
        let order: Vec<&str> = candidates.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(order, ["never-old", "never-new", "used-early", "used-late"]);
    }

    struct Full;

    #[async_trait]
    impl ImageFs for Full {
        async fn stats(&self) -> std::io::Result<FsStats> {
            Ok(FsStats { capacity_bytes: 1000, available_bytes: 50 })
        }
    }

    #[tokio::test]
    async fn young_images_are_kept_and_the_shortfall_reported() {
        let runtime = Arc::new(SimulatedRuntime::new("10.42.0.0/24".parse().unwrap(), Behaviour::default()));
        runtime.pull_image("skiff.local/young:1", None).await.unwrap();
        let policy = GcPolicy { min_age: Duration::from_secs(3600), ..GcPolicy::default() };
        let mut gc = ImageGc::new(runtime.clone(), Arc::new(Full), policy);
        let error = gc.collect().await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "Failed to garbage collect required amount of images. Attempted to free 150 bytes, but only found 0 bytes eligible to free."
        );
        assert_eq!(runtime.list_images().await.unwrap().len(), 1, "a young image was removed");
        assert_eq!(*gc.passes().borrow(), 1);

        let mut gc =
            ImageGc::new(runtime.clone(), Arc::new(Full), GcPolicy { min_age: Duration::ZERO, ..GcPolicy::default() });
        assert!(gc.collect().await.is_err(), "an image of 0 bytes does not free 150");
        assert!(runtime.list_images().await.unwrap().is_empty(), "an old unused image was kept");
    }
}
