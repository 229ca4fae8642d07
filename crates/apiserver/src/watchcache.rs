//! The watch cache: every object under `/registry/` held in memory, ready to serve as
//! JSON, plus a window of recent events. Lists and watches are served from it; the store
//! is read only for exact past revisions and paginated lists.
//!
//! One task follows the store's watch and applies each event; readers take a read lock.
//! A watch from a revision older than the event window gets 410 Expired.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use skiff_api::{strategy::Fields, Registry};
use skiff_store::{EventKind, KeyValue, RangeRequest, Revision, Store};
use tokio::sync::{broadcast, watch};

use crate::sparse;

/// The prefix under which every API object is stored.
pub const ROOT: &str = "/registry/";

/// One object as the cache keeps it: the JSON sent to clients (with resourceVersion set)
/// and what selectors need, extracted once.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub revision: Revision,
    pub json: Bytes,
    pub labels: BTreeMap<String, String>,
    /// metadata.name, metadata.namespace and the kind's selectable fields.
    pub fields: Fields,
    pub name: String,
    pub namespace: String,
    /// metadata.deletionTimestamp is set.
    pub deleting: bool,
}

impl CachedObject {
    pub fn field(&self, name: &str) -> Option<String> {
        match name {
            "metadata.name" => Some(self.name.clone()),
            "metadata.namespace" => Some(self.namespace.clone()),
            _ => self.fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()),
        }
    }

    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheEventKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug)]
pub struct CacheEvent {
    pub kind: CacheEventKind,
    pub revision: Revision,
    pub object: Arc<CachedObject>,
    /// The object before this change, for selector transitions.
    pub prev: Option<Arc<CachedObject>>,
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    events: VecDeque<Arc<CacheEvent>>,
    /// Events with revision > `window_start` are all in `events`.
    window_start: Revision,
    /// The revision `objects` are current at.
    revision: Revision,
}

/// A page of a cached list, all at one revision.
pub struct Page {
    pub items: Vec<Arc<CachedObject>>,
    /// More kept objects follow the last one.
    pub more: bool,
    pub revision: Revision,
}

/// Where a watch from a revision starts: the events to replay, the revision they run
/// through, and the receiver of later events.
pub struct WatchStart {
    pub replay: Vec<Arc<CacheEvent>>,
    pub through: Revision,
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
}

pub struct WatchCache {
    state: RwLock<State>,
    live: broadcast::Sender<Arc<CacheEvent>>,
    /// The revision the cache has applied through.
    progress: watch::Sender<Revision>,
    registry: Arc<Registry>,
    capacity: usize,
}

/// Sets metadata.resourceVersion in stored JSON and decodes what selectors need, in one
/// pass: only the selectable fields and metadata's name, namespace and labels are parsed;
/// the rest of the JSON (managedFields included) is copied as it is.
pub fn decode(registry: &Registry, kv: &KeyValue) -> Option<CachedObject> {
    let def = resource_for_key(registry, &kv.key);
    let mut wanted = sparse::Paths::default();
    let mut wanted_meta = sparse::Paths::default();
    for path in ["name", "namespace", "labels", "resourceVersion", "deletionTimestamp"] {
        wanted_meta.add(path);
    }
    for field in def.iter().flat_map(|def| def.strategy.selectable()) {
        for path in field.paths() {
            match path.strip_prefix("metadata.") {
                Some(in_meta) => wanted_meta.add(in_meta),
                None => wanted.add(path),
            }
        }
    }
    let split = wanted.read_split(&kv.value, "metadata").ok()?;
    let raw_meta = split.raw?;
    let mut value = split.kept;
    let meta = wanted_meta.read(raw_meta.get().as_bytes()).ok()?;
    let json = if meta.get("resourceVersion").is_some() {
        // Stored objects carry none; one that does has it replaced the slow way.
        let mut full: Value = serde_json::from_str(raw_meta.get()).ok()?;
        full.as_object_mut()?.insert("resourceVersion".into(), Value::String(kv.mod_revision.to_string()));
        splice(&kv.value, raw_meta, &serde_json::to_vec(&full).ok()?)?
    } else {
        splice(&kv.value, raw_meta, &with_resource_version(raw_meta.get(), kv.mod_revision)?)?
    };
    value.as_object_mut()?.insert("metadata".into(), meta);
    crate::meta::set_resource_version(&mut value, kv.mod_revision);
    let meta = &value["metadata"];
    let labels = meta["labels"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    let name = meta["name"].as_str().unwrap_or_default().to_string();
    let namespace = meta["namespace"].as_str().unwrap_or_default().to_string();
    let deleting = crate::meta::is_deleting(&value);
    let fields = def.map(|def| def.strategy.fields(&value)).unwrap_or_default();
    Some(CachedObject {
        key: kv.key.clone(),
        revision: kv.mod_revision,
        json,
        labels,
        fields,
        name,
        namespace,
        deleting,
    })
}

/// A metadata object's text with `"resourceVersion":"N"` added as its last member.
fn with_resource_version(meta: &str, revision: Revision) -> Option<Vec<u8>> {
    let body = meta.trim_end().strip_suffix('}')?.trim_end();
    let separator = if body.ends_with('{') { "" } else { "," };
    Some(format!("{body}{separator}\"resourceVersion\":\"{revision}\"}}").into_bytes())
}

/// `json` with the text of `part` (a slice of it) replaced by `replacement`.
fn splice(json: &[u8], part: &serde_json::value::RawValue, replacement: &[u8]) -> Option<Bytes> {
    let old = part.get().as_bytes();
    let start = (old.as_ptr() as usize).checked_sub(json.as_ptr() as usize)?;
    let end = start.checked_add(old.len()).filter(|end| *end <= json.len())?;
    let mut out = Vec::with_capacity(json.len() - old.len() + replacement.len());
    out.extend_from_slice(&json[..start]);
    out.extend_from_slice(replacement);
    out.extend_from_slice(&json[end..]);
    Some(Bytes::from(out))
}

/// The resource whose storage prefix holds `key`.
fn resource_for_key(registry: &Registry, key: &str) -> Option<Arc<skiff_api::ResourceDef>> {
    let rest = key.strip_prefix(ROOT)?;
    let mut parts = rest.splitn(3, '/');
    let (group, plural) = (parts.next()?, parts.next()?);
    let group = if group == "core" { "" } else { group };
    registry.find(|d| d.group == group && d.plural == plural)
}

impl WatchCache {
    /// Loads the store's current state and starts following it.
    pub async fn start(store: Arc<dyn Store>, registry: Arc<Registry>, capacity: usize) -> anyhow::Result<Arc<Self>> {
        let (live, _) = broadcast::channel(4096);
        let (progress, _) = watch::channel(0);
        let cache = Arc::new(WatchCache {
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                events: VecDeque::new(),
                window_start: 0,
                revision: 0,
            }),
            live,
            progress,
            registry,
            capacity,
        });
        let revision = cache.reload(store.as_ref()).await?;
        let follower = cache.clone();
        tokio::spawn(async move { follower.follow(store, revision).await });
        Ok(cache)
    }

    /// Replaces the cached state with a full read of the store.
    async fn reload(&self, store: &dyn Store) -> anyhow::Result<Revision> {
        let all = store.range(RangeRequest { prefix: ROOT.into(), ..Default::default() }).await?;
        let objects =
            all.kvs.iter().filter_map(|kv| decode(&self.registry, kv).map(|o| (kv.key.clone(), Arc::new(o)))).collect();
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        *state = State { objects, events: VecDeque::new(), window_start: all.revision, revision: all.revision };
        drop(state);
        self.progress.send_replace(all.revision);
        Ok(all.revision)
    }

    async fn follow(self: Arc<Self>, store: Arc<dyn Store>, mut revision: Revision) {
        loop {
            match store.watch(ROOT, revision).await {
                Ok(mut stream) => {
                    while let Some(item) = stream.next().await {
                        match item {
                            Ok(event) => {
                                revision = event.revision();
                                self.apply(event);
                            }
                            Err(error) => {
                                tracing::warn!(%error, "store watch ended");
                                break;
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "store watch failed"),
            }
            if matches!(store.compacted_revision().await, Ok(c) if c > revision) {
                // We fell behind compaction: start over from a full read.
                match self.reload(store.as_ref()).await {
                    Ok(r) => revision = r,
                    Err(error) => tracing::error!(%error, "watch cache reload failed"),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn apply(&self, event: skiff_store::Event) {
        let revision = event.revision();
        let Some(object) = decode(&self.registry, &event.kv) else {
            self.state.write().unwrap_or_else(|e| e.into_inner()).revision = revision;
            self.progress.send_replace(revision);
            return;
        };
        let object = Arc::new(object);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let prev = match event.kind {
            EventKind::Put => state.objects.insert(object.key.clone(), object.clone()),
            EventKind::Delete => state.objects.remove(&object.key),
        };
        let kind = match (event.kind, &prev) {
            (EventKind::Delete, _) => CacheEventKind::Deleted,
            (EventKind::Put, Some(_)) => CacheEventKind::Modified,
            (EventKind::Put, None) => CacheEventKind::Added,
        };
        let cached = Arc::new(CacheEvent { kind, revision, object, prev });
        state.events.push_back(cached.clone());
        while state.events.len() > self.capacity {
            if let Some(old) = state.events.pop_front() {
                state.window_start = old.revision;
            }
        }
        state.revision = revision;
        // Sent under the lock so that a reader's snapshot and its live events never
        // disagree about which revisions the snapshot holds.
        let _ = self.live.send(cached);
        drop(state);
        self.progress.send_replace(revision);
    }

    /// The revision the cache has applied through.
    pub fn revision(&self) -> Revision {
        *self.progress.borrow()
    }

    /// Waits until the cache has applied `revision` (bounded by `timeout`).
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.progress.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision)).await.is_ok_and(|r| r.is_ok())
    }

    /// Objects under `prefix`, in key order, and the revision they are current at.
    pub fn list(&self, prefix: &str, keep: impl FnMut(&CachedObject) -> bool) -> (Vec<Arc<CachedObject>>, Revision) {
        let page = self.page(prefix, None, 0, keep);
        (page.items, page.revision)
    }

    /// Up to `limit` (0: all) kept objects under `prefix` with keys after `start_after`.
    pub fn page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        mut keep: impl FnMut(&CachedObject) -> bool,
    ) -> Page {
        use std::ops::Bound;
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let start = match start_after {
            Some(key) => Bound::Excluded(key.to_string()),
            None => Bound::Included(prefix.to_string()),
        };
        let mut matching = state
            .objects
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, o)| keep(o))
            .map(|(_, o)| o.clone());
        let items: Vec<_> =
            if limit == 0 { matching.by_ref().collect() } else { matching.by_ref().take(limit).collect() };
        let more = limit > 0 && matching.next().is_some();
        Page { items, more, revision: state.revision }
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).objects.get(key).cloned()
    }

    /// Events after `revision` and a receiver for the ones to come; the caller drops
    /// live events at or below the returned revision. Err(oldest) when `revision` is
    /// older than the window.
    pub fn watch_from(&self, revision: Revision) -> Result<WatchStart, Revision> {
        let live = self.live.subscribe();
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if revision < state.window_start {
            return Err(state.window_start);
        }
        let replay: Vec<_> = state.events.iter().filter(|e| e.revision > revision).cloned().collect();
        let through = state.revision.max(revision);
        Ok(WatchStart { replay, through, live })
    }

    /// A snapshot of `prefix` plus a receiver for later events, for watches that start
    /// with the current state (synthetic ADDED events).
    pub fn snapshot_and_watch(
        &self,
        prefix: &str,
    ) -> (Vec<Arc<CachedObject>>, Revision, broadcast::Receiver<Arc<CacheEvent>>) {
        let live = self.live.subscribe();
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let items = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, o)| o.clone())
            .collect();
        (items, state.revision, live)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored(key: &str, object: &Value, revision: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from(serde_json::to_vec(object).unwrap()),
            create_revision: revision,
            mod_revision: revision,
        }
    }

    #[test]
    fn decoding_sets_the_resource_version_and_keeps_the_rest_as_stored() {
        let registry = skiff_api::builtins::builtin_registry();
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web"}, "managedFields": [{"manager": "m"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"},
        });
        let object = decode(&registry, &stored("/registry/core/pods/ns/web", &pod, 42)).unwrap();
        let mut expected = pod.clone();
        expected["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(serde_json::from_slice::<Value>(&object.json).unwrap(), expected);
        assert_eq!((object.name.as_str(), object.namespace.as_str(), object.revision), ("web", "ns", 42));
        assert_eq!(object.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(object.field("spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(object.field("status.phase").as_deref(), Some("Running"));
        assert!(!object.deleting);
    }

    #[test]
    fn decoding_marks_objects_being_deleted() {
        let registry = skiff_api::builtins::builtin_registry();
        let ns = json!({"metadata": {"name": "team", "deletionTimestamp": "2026-11-22T20:00:00Z"}});
        let object = decode(&registry, &stored("/registry/core/namespaces/team", &ns, 5)).unwrap();
        assert!(object.deleting);
        assert_eq!(
            serde_json::from_slice::<Value>(&object.json).unwrap()["metadata"]["deletionTimestamp"],
            ns["metadata"]["deletionTimestamp"]
        );
    }

    #[test]
    fn an_empty_or_versioned_metadata_gets_exactly_one_resource_version() {
        let registry = skiff_api::builtins::builtin_registry();
        let empty = json!({"kind": "ConfigMap", "metadata": {}, "data": {"a": "b"}});
        let object = decode(&registry, &stored("/registry/core/configmaps/ns/x", &empty, 7)).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&object.json).unwrap()["metadata"], json!({"resourceVersion": "7"}));
        let versioned = json!({"metadata": {"name": "x", "resourceVersion": "3"}});
        let object = decode(&registry, &stored("/registry/core/configmaps/ns/x", &versioned, 8)).unwrap();
        let text = String::from_utf8(object.json.to_vec()).unwrap();
        assert_eq!(text.matches("resourceVersion").count(), 1, "{text}");
        assert!(text.contains(r#""resourceVersion":"8""#), "{text}");
        assert!(decode(&registry, &stored("/registry/core/configmaps/ns/x", &json!({"data": {}}), 9)).is_none());
    }
}
