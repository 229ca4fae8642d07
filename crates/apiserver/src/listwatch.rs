//! LIST and WATCH: selectors, pagination with continue tokens, resourceVersion
//! semantics, and watch streams (including streaming lists with initial events).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use futures::Stream;
use serde_json::{json, Value};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::{ApiError, ResourceDef};
use skiff_store::{RangeRequest, Revision};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::request::Query;
use crate::rest::{parse_rv, Api};
use crate::watchcache::{decode, CacheEvent, CacheEventKind, CachedObject};

/// Label and field selectors of a request, checked against the resource's fields.
pub struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub fn parse(def: &ResourceDef, query: &Query) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or("")).map_err(ApiError::BadRequest)?;
        let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or("")).map_err(ApiError::BadRequest)?;
        for requirement in fields.requirements() {
            let field = requirement.field.as_str();
            let supported =
                matches!(field, "metadata.name" | "metadata.namespace") || known_fields(def).contains(&field);
            if !supported {
                return Err(ApiError::BadRequest(format!("field label not supported: {field}")));
            }
        }
        Ok(Filter { labels, fields })
    }

    pub fn matches(&self, object: &CachedObject) -> bool {
        self.labels.matches(&object.labels) && self.fields.matches(|f| object.field(f))
    }
}

/// The field names a kind's field selectors may use besides metadata's.
fn known_fields(def: &ResourceDef) -> Vec<&'static str> {
    def.strategy.selectable().iter().map(|field| field.name).collect()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, last_key: &str) -> String {
    let token = serde_json::to_vec(&ContinueToken { rv, start: last_key.to_string() }).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token)
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into(),
            )
        })
}

const EXPIRED_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

const EXPIRED_LIST: &str = "The resourceVersion for the provided list is too old.";

/// Rewords an Expired error for the request that met it.
fn expired_as(error: ApiError, message: &str) -> ApiError {
    match error {
        ApiError::Expired(_) => ApiError::Expired(message.into()),
        other => other,
    }
}

/// Converts stored JSON to a served form (for resources that share another's storage).
type Convert = Option<fn(Value) -> Value>;

/// A burst of queued watch events is sent as one chunk of at most about this size.
const COALESCE_BYTES: usize = 64 * 1024;

/// An object's JSON as the requesting resource serves it.
fn served_json(convert: Convert, object: &CachedObject) -> Bytes {
    match convert {
        None => object.json.clone(),
        Some(convert) => serde_json::to_vec(&convert(object.value())).map(Bytes::from).unwrap_or_default(),
    }
}

/// A list response body built from ready JSON: header, items, continue.
fn list_body(def: &ResourceDef, revision: Revision, items: &[Arc<CachedObject>], next: Option<String>) -> Bytes {
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    let head = format!(
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        def.kind,
        def.api_version(),
        metadata
    );
    let size = head.len() + items.iter().map(|i| i.json.len() + 1).sum::<usize>() + 2;
    let mut out = BytesMut::with_capacity(size);
    out.put_slice(head.as_bytes());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&served_json(def.stored_as.map(|s| s.from_storage), item));
    }
    out.put_slice(b"]}");
    out.freeze()
}

impl Api {
    pub async fn list(&self, def: &ResourceDef, namespace: Option<&str>, query: &Query) -> Result<Bytes, ApiError> {
        let filter = Filter::parse(def, query)?;
        let prefix = def.list_prefix(namespace);
        let limit = query.int("limit")?.unwrap_or(0).max(0) as usize;
        let rv = query.get("resourceVersion");
        let rv_match = query.get("resourceVersionMatch");
        if let Some(token) = query.get("continue") {
            if rv.is_some() {
                return Err(ApiError::BadRequest(
                    "specifying resource version is not allowed when using continue".into(),
                ));
            }
            let token = decode_continue(token)?;
            // Nothing changed since the first page: the cache still holds its snapshot.
            if let Some(page) = self.cached_page(def, &prefix, &filter, limit, token.rv, Some(&token.start)) {
                return Ok(page);
            }
            return self
                .list_from_store(def, &prefix, &filter, limit, token.rv, Some(token.start))
                .await
                .map_err(|e| expired_as(e, EXPIRED_CONTINUE));
        }
        match (rv, rv_match) {
            (Some(rv), Some("Exact")) => {
                let rv = parse_rv(rv)?;
                self.list_from_store(def, &prefix, &filter, limit, rv, None)
                    .await
                    .map_err(|e| expired_as(e, EXPIRED_LIST))
            }
            (None, Some(m)) => Err(ApiError::BadRequest(format!(
                "resourceVersionMatch is forbidden unless resourceVersion is provided (got {m:?})"
            ))),
            (_, Some(m)) if m != "NotOlderThan" => Err(ApiError::BadRequest(format!(
                "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
            ))),
            // Paginated consistent reads: from the cache when it is current, else from the
            // store (later pages must see the first page's snapshot).
            (None, None) if limit > 0 => {
                let current = self.sync_cache().await?;
                match self.cached_page(def, &prefix, &filter, limit, current, None) {
                    Some(page) => Ok(page),
                    None => self.list_from_store(def, &prefix, &filter, limit, current, None).await,
                }
            }
            (rv, _) => {
                let min = match rv {
                    None => self.sync_cache().await?,
                    Some(rv) => parse_rv(rv)?,
                };
                if !self.cache.wait_for(min, Duration::from_secs(3)).await {
                    return Err(ApiError::Timeout(format!(
                        "Too large resource version: {min}, current: {}",
                        self.cache.revision()
                    )));
                }
                let (mut items, revision) = self.cache.list(&prefix, |o| filter.matches(o));
                let mut next = None;
                if limit > 0 && items.len() > limit {
                    items.truncate(limit);
                    next = items.last().map(|last| encode_continue(revision, &last.key));
                }
                Ok(list_body(def, revision, &items, next))
            }
        }
    }

    /// A page served from the watch cache, if the cache is exactly at `revision`.
    fn cached_page(
        &self,
        def: &ResourceDef,
        prefix: &str,
        filter: &Filter,
        limit: usize,
        revision: Revision,
        start_after: Option<&str>,
    ) -> Option<Bytes> {
        let page = self.cache.page(prefix, start_after, limit, |o| filter.matches(o));
        if page.revision != revision {
            return None;
        }
        let next = if page.more { page.items.last().map(|last| encode_continue(revision, &last.key)) } else { None };
        Some(list_body(def, revision, &page.items, next))
    }

    /// A list read from the store at `revision`, filling pages until `limit` matches.
    async fn list_from_store(
        &self,
        def: &ResourceDef,
        prefix: &str,
        filter: &Filter,
        limit: usize,
        revision: Revision,
        mut start_after: Option<String>,
    ) -> Result<Bytes, ApiError> {
        let mut items = Vec::new();
        loop {
            let request = RangeRequest {
                prefix: prefix.to_string(),
                start_after: start_after.clone(),
                limit: if limit == 0 { 0 } else { (limit - items.len()).max(1) },
                revision: Some(revision),
            };
            let page = self.store.range(request).await.map_err(|e| match e {
                skiff_store::Error::Compacted { .. } => ApiError::Expired(EXPIRED_LIST.into()),
                other => store_error_to_api(other),
            })?;
            start_after = page.kvs.last().map(|kv| kv.key.clone());
            items.extend(
                page.kvs.iter().filter_map(|kv| decode(&self.registry, kv)).filter(|o| filter.matches(o)).map(Arc::new),
            );
            let full = limit > 0 && items.len() >= limit;
            if !page.more || full {
                let next = if page.more { start_after.as_deref().map(|k| encode_continue(revision, k)) } else { None };
                return Ok(list_body(def, revision, &items, next));
            }
        }
    }

    pub async fn watch(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        query: &Query,
    ) -> Result<impl Stream<Item = Bytes> + Send + 'static, ApiError> {
        let filter = Filter::parse(def, query)?;
        let prefix = def.list_prefix(namespace);
        let bookmarks = query.flag("allowWatchBookmarks");
        let timeout = Duration::from_secs(query.int("timeoutSeconds")?.unwrap_or(1800).clamp(1, 3600) as u64);
        let rv = query.get("resourceVersion");
        let send_initial = query.bool("sendInitialEvents");
        if send_initial.is_some() && query.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::Invalid(
                skiff_api::Target::default(),
                vec![skiff_api::FieldError::forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )],
            ));
        }
        let kind = WatchKind { kind: def.kind, api_version: def.api_version() };
        let convert: Convert = def.stored_as.map(|s| s.from_storage);

        // Start from the current state (synthetic ADDED events) or from a revision.
        let initial = send_initial.unwrap_or(matches!(rv, None | Some("0")));
        let mut first: Vec<Bytes> = Vec::new();
        let (replay, through, live) = if initial {
            if rv.is_none() {
                self.sync_cache().await?;
            } else if let Some(rv) = rv.map(parse_rv).transpose()? {
                self.cache.wait_for(rv, Duration::from_secs(3)).await;
            }
            let (objects, revision, live) = self.cache.snapshot_and_watch(&prefix);
            first.extend(
                objects.iter().filter(|o| filter.matches(o)).map(|o| event_line("ADDED", &served_json(convert, o))),
            );
            if send_initial == Some(true) && bookmarks {
                first.push(kind.bookmark(revision, true));
            }
            (Vec::new(), revision, live)
        } else {
            let from = parse_rv(rv.unwrap_or("0"))?;
            if !self.cache.wait_for(from, Duration::from_secs(3)).await {
                return Err(ApiError::Timeout(format!(
                    "Too large resource version: {from}, current: {}",
                    self.cache.revision()
                )));
            }
            match self.cache.watch_from(from) {
                Ok(start) => (start.replay, start.through, start.live),
                Err(oldest) => {
                    let status = ApiError::Expired(format!("too old resource version: {from} ({oldest})")).status();
                    let line = error_line(&status);
                    return Ok(futures::stream::iter(vec![line]).left_stream());
                }
            }
        };
        for event in &replay {
            if event.object.key.starts_with(&prefix) {
                first.extend(render(event, &filter, convert));
            }
        }
        let state =
            WatchState { live, through, prefix, filter, kind, bookmarks, last_sent: through, convert, ended: false };
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = futures::stream::iter(first).chain(futures::stream::unfold(state, move |mut state| async move {
            loop {
                if state.ended {
                    return None;
                }
                let tick = tokio::time::sleep(Duration::from_secs(30));
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return None,
                    _ = tick, if state.bookmarks => {
                        if state.through > state.last_sent {
                            state.last_sent = state.through;
                            let line = state.kind.bookmark(state.through, false);
                            return Some((line, state));
                        }
                    }
                    received = state.live.recv() => match received {
                        Ok(event) => {
                            let mut lines = BytesMut::new();
                            state.take(&event, &mut lines);
                            // Events already queued go out in the same chunk: one write and
                            // one TLS record for a burst instead of one per event.
                            while lines.len() < COALESCE_BYTES {
                                match state.live.try_recv() {
                                    Ok(event) => state.take(&event, &mut lines),
                                    Err(TryRecvError::Empty) => break,
                                    Err(TryRecvError::Lagged(_) | TryRecvError::Closed) => {
                                        state.ended = true;
                                        break;
                                    }
                                }
                            }
                            if !lines.is_empty() {
                                return Some((lines.freeze(), state));
                            }
                            if state.ended {
                                return None;
                            }
                        }
                        // A watcher too slow to keep up is closed; the client resumes from
                        // its last resourceVersion.
                        Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
                    }
                }
            }
        }));
        Ok(stream.right_stream())
    }
}

use futures::StreamExt;

struct WatchState {
    live: tokio::sync::broadcast::Receiver<Arc<CacheEvent>>,
    through: Revision,
    prefix: String,
    filter: Filter,
    kind: WatchKind,
    bookmarks: bool,
    last_sent: Revision,
    convert: Convert,
    /// The live channel lagged or closed after events already taken; they go out first.
    ended: bool,
}

impl WatchState {
    /// Appends the line `event` means to this watcher, if any, to `out`.
    fn take(&mut self, event: &CacheEvent, out: &mut BytesMut) {
        if event.revision <= self.through {
            return;
        }
        self.through = event.revision;
        if event.object.key.starts_with(&self.prefix) && render_into(out, event, &self.filter, self.convert) {
            self.last_sent = event.revision;
        }
    }
}

struct WatchKind {
    kind: &'static str,
    api_version: String,
}

impl WatchKind {
    fn bookmark(&self, revision: Revision, initial_end: bool) -> Bytes {
        let mut object = json!({
            "kind": self.kind,
            "apiVersion": self.api_version,
            "metadata": { "resourceVersion": revision.to_string(), "creationTimestamp": null },
        });
        if initial_end {
            object["metadata"]["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let mut line = serde_json::to_vec(&json!({ "type": "BOOKMARK", "object": object })).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(object.len() + 32);
    put_event_line(&mut out, kind, object);
    out.freeze()
}

fn put_event_line(out: &mut BytesMut, kind: &str, object: &[u8]) {
    out.reserve(object.len() + 32);
    out.put_slice(b"{\"type\":\"");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\",\"object\":");
    out.put_slice(object);
    out.put_slice(b"}\n");
}

fn error_line(status: &Value) -> Bytes {
    event_line("ERROR", status.to_string().as_bytes())
}

/// The watch event a change means to a filtered watcher: an object entering the
/// selection is ADDED, one leaving it is DELETED.
fn event_kind(event: &CacheEvent, filter: &Filter) -> Option<&'static str> {
    let now = filter.matches(&event.object);
    let before = event.prev.as_ref().is_some_and(|p| filter.matches(p));
    match event.kind {
        CacheEventKind::Added if now => Some("ADDED"),
        CacheEventKind::Modified if now && before => Some("MODIFIED"),
        CacheEventKind::Modified if now => Some("ADDED"),
        CacheEventKind::Modified if before => Some("DELETED"),
        CacheEventKind::Deleted if now || before => Some("DELETED"),
        _ => None,
    }
}

fn render(event: &CacheEvent, filter: &Filter, convert: Convert) -> Option<Bytes> {
    let mut out = BytesMut::new();
    render_into(&mut out, event, filter, convert).then(|| out.freeze())
}

/// Appends the event's line to `out`; false when the watcher does not see the event.
fn render_into(out: &mut BytesMut, event: &CacheEvent, filter: &Filter, convert: Convert) -> bool {
    let Some(kind) = event_kind(event, filter) else { return false };
    put_event_line(out, kind, &served_json(convert, &event.object));
    true
}

fn store_error_to_api(error: skiff_store::Error) -> ApiError {
    ApiError::Internal(error.to_string())
}
