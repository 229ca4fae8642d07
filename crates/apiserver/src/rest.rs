//! The generic REST storage: create, get, list, update, patch, delete and watch for any
//! registered resource, with Kubernetes' metadata, concurrency and deletion semantics.
//! Kind-specific behaviour comes from the resource's strategy.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value};
use skiff_api::apply::{self, Operation};
use skiff_api::strategy::UpdateRules;
use skiff_api::{validation, ApiError, FieldError, ResourceDef, Target};
use skiff_store::{KeyValue, Store};

use crate::meta;
use crate::request::Query;
use crate::services::ServiceAllocator;
use crate::watchcache::WatchCache;

pub struct Api {
    pub store: Arc<dyn Store>,
    pub cache: Arc<WatchCache>,
    pub registry: Arc<skiff_api::Registry>,
    pub services: ServiceAllocator,
}

/// A successful answer: status code, body, and Warning headers.
pub struct Reply {
    pub code: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Reply { code: 200, body, warnings: Vec::new() }
    }
    pub fn created(body: Value) -> Self {
        Reply { code: 201, body, warnings: Vec::new() }
    }
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings.extend(warnings);
        self
    }
}

/// What to do with fields the schema does not know (`fieldValidation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn from_query(query: &Query) -> Result<Self, ApiError> {
        match query.get("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", got {other:?}"
            ))),
        }
    }
}

/// How a write is carried out: from its query string and User-Agent.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub validation: FieldValidation,
    /// Recorded in managedFields: `fieldManager`, else the User-Agent's product.
    pub manager: String,
    /// Server-side apply: take ownership of conflicting fields.
    pub force: bool,
    /// Whether the client named a field manager (server-side apply requires one).
    pub manager_given: bool,
    /// Record the write in managedFields (server-side apply records its own).
    pub track_fields: bool,
}

impl WriteOptions {
    pub fn new(query: &Query, user_agent: &str) -> Result<Self, ApiError> {
        let field_manager = query.get("fieldManager");
        if field_manager.is_some_and(|m| m.len() > 128) {
            return Err(ApiError::BadRequest("fieldManager: Too long: may not be more than 128 bytes".into()));
        }
        Ok(WriteOptions {
            dry_run: query.dry_run()?,
            validation: FieldValidation::from_query(query)?,
            manager: skiff_api::apply::manager_or_user_agent(field_manager, user_agent),
            force: query.flag("force"),
            manager_given: field_manager.is_some(),
            track_fields: true,
        })
    }
}

impl Default for WriteOptions {
    /// The server's own writes (bootstrap objects).
    fn default() -> Self {
        WriteOptions {
            dry_run: false,
            validation: FieldValidation::Strict,
            manager: "skiff-apiserver".into(),
            force: false,
            manager_given: true,
            track_fields: true,
        }
    }
}

/// Which object a request addresses.
pub struct Addr<'a> {
    pub def: &'a ResourceDef,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl Addr<'_> {
    pub fn key(&self) -> String {
        self.def.key(self.namespace, self.name)
    }
    pub fn not_found(&self) -> ApiError {
        ApiError::NotFound(Target::new(self.def.group, self.def.plural, self.name))
    }
    pub fn conflict(&self) -> ApiError {
        ApiError::conflict_modified(Target::new(self.def.group, self.def.plural, self.name))
    }
    fn invalid_target(&self) -> Target {
        Target::new(self.def.group, self.def.kind, self.name)
    }
}

/// What a write makes of the stored object.
type Change<'a> = dyn Fn(&Value) -> Result<Value, ApiError> + Sync + 'a;

/// A read-modify-write of one object.
#[derive(Clone, Copy)]
enum Mutation<'a> {
    Write { precondition: Option<i64>, options: &'a WriteOptions, change: &'a Change<'a>, kind: WriteKind },
    Delete(&'a DeleteOptions),
}

impl Mutation<'_> {
    fn dry_run(&self) -> bool {
        match self {
            Mutation::Write { options, .. } => options.dry_run,
            Mutation::Delete(options) => options.dry_run,
        }
    }
}

/// How one attempt of a read-modify-write ended.
enum Attempt {
    Written(Reply),
    /// Nothing to store (a no-op or a dry run); the reply is what the object is or would be.
    Unchanged(Reply),
    /// Another write came first and the caller gave no precondition: try again.
    LostRace,
}

/// What part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// The main resource: everything but status.
    Main,
    /// The status subresource: only status.
    Status,
    /// namespaces/NAME/finalize: only spec.finalizers.
    Finalize,
    /// pods/NAME/binding: a server-side change of the whole object.
    Binding,
    /// .../scale: spec.replicas, validated by the caller.
    Scale,
}

impl WriteKind {
    /// A whole-object change the server makes for a subresource; its caller validates.
    fn is_internal(self) -> bool {
        matches!(self, WriteKind::Binding | WriteKind::Scale)
    }

    /// The subresource recorded in managedFields.
    fn subresource(self) -> Option<&'static str> {
        match self {
            WriteKind::Main | WriteKind::Binding => None,
            WriteKind::Status => Some("status"),
            WriteKind::Finalize => Some("finalize"),
            WriteKind::Scale => Some("scale"),
        }
    }

    pub fn for_subresource(subresource: Option<&str>) -> Result<Self, ApiError> {
        match subresource {
            None => Ok(WriteKind::Main),
            Some("status") => Ok(WriteKind::Status),
            Some("finalize") => Ok(WriteKind::Finalize),
            Some(_) => Err(ApiError::MethodNotAllowed),
        }
    }
}

/// The structure managedFields are computed over.
pub fn field_schema(def: &ResourceDef) -> apply::Schema {
    apply::schema_for(def.group, def.version, def.kind)
}

/// How long a consistent read waits for the watch cache to catch up with the store.
const CACHE_WAIT: Duration = Duration::from_secs(3);

fn is_core_service(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "services"
}

fn is_core_pod(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "pods"
}

fn is_core_namespace(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "namespaces"
}

/// A namespace's own finalizers (spec.finalizers) hold it in Terminating while its
/// content is removed.
fn spec_finalizers(object: &Value) -> bool {
    object["spec"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
}

fn has_finalizers(def: &ResourceDef, object: &Value) -> bool {
    !meta::finalizers(object).is_empty() || (is_core_namespace(def) && spec_finalizers(object))
}

/// Checks the body's apiVersion and kind name this resource. Missing ones are taken
/// from the URL, as Kubernetes' decoder does (the Python client omits them).
fn check_type(def: &ResourceDef, object: &mut Value) -> Result<(), ApiError> {
    let expected_version = def.api_version();
    let map = object.as_object_mut().ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
    let kind = map.entry("kind").or_insert_with(|| Value::String(def.kind.into()));
    let kind = kind.as_str().unwrap_or_default().to_string();
    let api_version = map.entry("apiVersion").or_insert_with(|| Value::String(expected_version.clone()));
    let api_version = api_version.as_str().unwrap_or_default().to_string();
    if kind != def.kind || api_version != expected_version {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({expected_version}) or kind ({kind}) does not match {}",
            def.kind
        )));
    }
    Ok(())
}

/// Checks a body's type and puts it through the kind's decoding (which drops unknown
/// fields) and defaults.
/// Returns the object and the warnings about fields that were dropped.
pub fn decode_as(
    def: &ResourceDef,
    body: Value,
    validation: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let mut body = body;
    check_type(def, &mut body)?;
    let decoded = def.strategy.decode(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "{} in version {:?} cannot be handled as a {}: {e}",
            def.kind, def.version, def.kind
        ))
    })?;
    let warnings: Vec<String> = match validation {
        FieldValidation::Ignore => Vec::new(),
        _ => decoded.unknown.iter().map(|f| format!("unknown field {f:?}")).collect(),
    };
    if validation == FieldValidation::Strict && !warnings.is_empty() {
        return Err(ApiError::BadRequest(format!("strict decoding error: {}", warnings.join(", "))));
    }
    Ok((decoded.object, warnings))
}

fn store_error(error: skiff_store::Error) -> ApiError {
    match error {
        skiff_store::Error::Compacted { requested, compacted } => {
            ApiError::Expired(format!("too old resource version: {requested} ({compacted})"))
        }
        skiff_store::Error::FutureRevision { requested, current } => {
            ApiError::Timeout(format!("Too large resource version: {requested}, current: {current}"))
        }
        other => ApiError::Internal(other.to_string()),
    }
}

/// A stored object as `def` serves it, with its resourceVersion.
fn decode_stored(def: &ResourceDef, kv: &KeyValue) -> Result<Value, ApiError> {
    let value: Value =
        serde_json::from_slice(&kv.value).map_err(|e| ApiError::Internal(format!("stored object: {e}")))?;
    let mut value = def.from_storage(value);
    meta::set_resource_version(&mut value, kv.mod_revision);
    Ok(value)
}

/// How a compare-and-swap write of the store ended, as an attempt of a read-modify-write;
/// `written` makes the reply from what was stored.
fn stored_attempt(
    addr: &Addr<'_>,
    result: Result<KeyValue, skiff_store::Error>,
    written: impl FnOnce(KeyValue) -> Reply,
) -> Result<Attempt, ApiError> {
    match result {
        Ok(kv) => Ok(Attempt::Written(written(kv))),
        Err(skiff_store::Error::Conflict { .. }) => Ok(Attempt::LostRace),
        Err(skiff_store::Error::NotFound(_)) => Err(addr.not_found()),
        Err(other) => Err(store_error(other)),
    }
}

/// The stored bytes of an object: everything but resourceVersion (the store's revision
/// is the source of truth for it).
fn encode_stored(def: &ResourceDef, object: &Value) -> Result<Bytes, ApiError> {
    let bytes = if def.stored_as.is_some() {
        let mut copy = def.to_storage(object.clone());
        meta::meta_mut(&mut copy).remove("resourceVersion");
        serde_json::to_vec(&copy)
    } else {
        serde_json::to_vec(&WithoutResourceVersion(object))
    };
    bytes.map(Bytes::from).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Serialises an object as it is but for metadata.resourceVersion, so that storing an
/// object needs no copy of it.
struct WithoutResourceVersion<'a>(&'a Value);

impl Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Value::Object(top) = self.0 else { return self.0.serialize(serializer) };
        let mut out = serializer.serialize_map(Some(top.len()))?;
        for (key, value) in top {
            match value {
                Value::Object(metadata) if key == "metadata" => {
                    out.serialize_entry(key, &MetadataWithoutResourceVersion(metadata))?
                }
                _ => out.serialize_entry(key, value)?,
            }
        }
        out.end()
    }
}

struct MetadataWithoutResourceVersion<'a>(&'a serde_json::Map<String, Value>);

impl Serialize for MetadataWithoutResourceVersion<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().filter(|(key, _)| *key != "resourceVersion"))
    }
}

/// Parses a resourceVersion given by a client.
pub fn parse_rv(value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version: {value:?}")))
}

/// Options of a DELETE, from the query string or a DeleteOptions body.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// `body` is a decoded DeleteOptions object, or Null when the request had none.
    pub fn parse(query: &Query, body: &Value) -> Result<Self, ApiError> {
        let mut propagation = body["propagationPolicy"]
            .as_str()
            .map(str::to_string)
            .or(query.get("propagationPolicy").map(str::to_string));
        let orphan = body["orphanDependents"].as_bool().or(query.bool("orphanDependents"));
        if propagation.is_none() {
            propagation = orphan.map(|o| if o { "Orphan" } else { "Background" }.to_string());
        }
        if let Some(p) = &propagation {
            if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
                return Err(ApiError::Invalid(
                    Target::default(),
                    vec![FieldError::not_supported(
                        "propagationPolicy",
                        p.as_str(),
                        &["Foreground", "Background", "Orphan"],
                    )],
                ));
            }
        }
        let dry_run = body["dryRun"].as_array().is_some_and(|a| a.iter().any(|v| v == "All")) || query.dry_run()?;
        Ok(DeleteOptions {
            grace_period: body["gracePeriodSeconds"].as_i64().or(query.int("gracePeriodSeconds")?),
            propagation,
            uid: body["preconditions"]["uid"].as_str().map(str::to_string),
            resource_version: body["preconditions"]["resourceVersion"].as_str().map(str::to_string),
            dry_run,
        })
    }
}

impl Api {
    async fn read(&self, addr: &Addr<'_>) -> Result<(Value, KeyValue), ApiError> {
        let kv = self.store.get(&addr.key()).await.map_err(store_error)?.ok_or_else(|| addr.not_found())?;
        Ok((decode_stored(addr.def, &kv)?, kv))
    }

    pub async fn get(&self, addr: &Addr<'_>, query: &Query) -> Result<Reply, ApiError> {
        // resourceVersion=0 may be served from the cache; anything else reads the store.
        if query.get("resourceVersion") == Some("0") {
            if let Some(cached) = self.cache.get(&addr.key()) {
                return Ok(Reply::ok(addr.def.from_storage(cached.value())));
            }
        }
        Ok(Reply::ok(self.read(addr).await?.0))
    }

    /// The namespace must exist and not be terminating for new objects in it.
    async fn check_namespace(&self, def: &ResourceDef, namespace: &str, name: &str) -> Result<(), ApiError> {
        let ns_def = self
            .registry
            .get("", "v1", "namespaces")
            .ok_or_else(|| ApiError::Internal("no namespaces resource".into()))?;
        let key = ns_def.key(None, namespace);
        let not_found = || ApiError::NotFound(Target::new("", "namespaces", namespace));
        // Every create asks: the cache's copy answers from what it decoded already.
        let terminating = match self.cache.get(&key) {
            Some(cached) => cached.deleting || cached.field("status.phase").as_deref() == Some("Terminating"),
            None => {
                let kv = self.store.get(&key).await.map_err(store_error)?.ok_or_else(not_found)?;
                let ns = decode_stored(&ns_def, &kv)?;
                meta::is_deleting(&ns) || ns["status"]["phase"] == "Terminating"
            }
        };
        if terminating {
            let qualified =
                if def.group.is_empty() { def.plural.to_string() } else { format!("{}.{}", def.plural, def.group) };
            return Err(ApiError::Forbidden(format!(
                "{qualified} {name:?} is forbidden: unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }

    fn validate_meta(&self, def: &ResourceDef, object: &Value) -> Vec<FieldError> {
        validation::object_meta(&object["metadata"], def.namespaced, def.name_rule)
    }

    pub async fn create(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        body: Value,
        options: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        let dry_run = options.dry_run;
        let (mut object, warnings) = decode_as(def, body, options.validation)?;
        let body_ns = meta::meta_str(&object, "namespace").map(str::to_string);
        {
            let m = meta::meta_mut(&mut object);
            if def.namespaced {
                match (namespace, body_ns.as_deref()) {
                    (Some(url), Some(body)) if url != body => {
                        return Err(ApiError::BadRequest(
                            "the namespace of the provided object does not match the namespace sent on the request"
                                .into(),
                        ))
                    }
                    (Some(url), _) => {
                        m.insert("namespace".into(), json!(url));
                    }
                    (None, _) => {
                        return Err(ApiError::NotFoundPath("the server could not find the requested resource".into()))
                    }
                }
            } else {
                m.remove("namespace");
            }
            if m.get("resourceVersion").and_then(Value::as_str).is_some_and(|rv| !rv.is_empty()) {
                return Err(ApiError::BadRequest("resourceVersion should not be set on objects to be created".into()));
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
            for transient in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "resourceVersion"] {
                m.remove(transient);
            }
            if def.tracks_generation {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        let generate = meta::meta_str(&object, "name").is_none() && meta::meta_str(&object, "generateName").is_some();
        if generate {
            let prefix = meta::meta_str(&object, "generateName").unwrap_or_default().to_string();
            meta::meta_mut(&mut object).insert("name".into(), json!(meta::generate_name(&prefix)));
        }
        let name = meta::name(&object).unwrap_or_default().to_string();
        // Mutating admission comes before the kind's create rules, as in Kubernetes.
        if is_core_pod(def) {
            crate::admission::priority::admit_pod_create(self, &mut object).await?;
        }
        let kind_errors = def.strategy.prepare_create(&mut object);
        let mut errors = self.validate_meta(def, &object);
        errors.extend(kind_errors);
        if !errors.is_empty() {
            return Err(ApiError::Invalid(Target::new(def.group, def.kind, &name), errors));
        }
        if options.track_fields {
            let now = meta::now_rfc3339();
            apply::track_update(None, &mut object, &options.manager, Operation::Update, None, &now, field_schema(def));
        }
        if let Some(ns) = namespace.filter(|_| def.namespaced) {
            self.check_namespace(def, ns, &name).await?;
        }

        let allocation = if is_core_service(def) { Some(self.services.allocate(&mut object, None)?.0) } else { None };
        if dry_run {
            if let Some(a) = allocation {
                self.services.release(a);
            }
            return Ok(Reply::created(object).with_warnings(warnings));
        }
        let mut attempts = 0;
        let result = loop {
            let addr = Addr { def, namespace, name: meta::name(&object).unwrap_or_default() };
            let bytes = encode_stored(def, &object)?;
            match self.store.create(&addr.key(), bytes).await {
                Err(skiff_store::Error::AlreadyExists(_)) if generate && attempts < 8 => {
                    attempts += 1;
                    let prefix = meta::meta_str(&object, "generateName").unwrap_or_default().to_string();
                    meta::meta_mut(&mut object).insert("name".into(), json!(meta::generate_name(&prefix)));
                }
                Err(skiff_store::Error::AlreadyExists(_)) => {
                    break Err(ApiError::AlreadyExists(Target::new(def.group, def.plural, addr.name)))
                }
                Err(other) => break Err(store_error(other)),
                Ok(kv) => break Ok(kv),
            }
        };
        match result {
            Ok(kv) => {
                meta::set_resource_version(&mut object, kv.mod_revision);
                Ok(Reply::created(object).with_warnings(warnings))
            }
            Err(error) => {
                if let Some(a) = allocation {
                    self.services.release(a);
                }
                Err(error)
            }
        }
    }

    /// PUT on the main resource or a subresource (`status`, `finalize`).
    pub async fn update(
        &self,
        addr: &Addr<'_>,
        kind: WriteKind,
        body: Value,
        options: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        let (body, warnings) = decode_as(addr.def, body, options.validation)?;
        if meta::name(&body) != Some(addr.name) {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                meta::name(&body).unwrap_or_default(),
                addr.name
            )));
        }
        let precondition = meta::meta_str(&body, "resourceVersion").map(parse_rv).transpose()?;
        if precondition.is_none() && !addr.def.allow_unconditional_update {
            return Err(ApiError::invalid_one(
                addr.invalid_target(),
                FieldError::invalid("metadata.resourceVersion", "", "must be specified for an update"),
            ));
        }
        let reply = self.write_with_retry(addr, precondition, options, |_old| Ok(body.clone()), kind).await?;
        Ok(reply.with_warnings(warnings))
    }

    /// Reads the stored object, computes the new one with `change`, and writes it with a
    /// compare-and-swap. Without a client precondition a lost race is retried.
    pub async fn write_with_retry(
        &self,
        addr: &Addr<'_>,
        precondition: Option<i64>,
        options: &WriteOptions,
        change: impl Fn(&Value) -> Result<Value, ApiError> + Sync,
        kind: WriteKind,
    ) -> Result<Reply, ApiError> {
        let change: &Change<'_> = &change;
        self.read_modify_write(addr, Mutation::Write { precondition, options, change, kind }).await
    }

    /// Applies `mutation` to the stored object until it writes or fails for good: a lost
    /// race is tried again from a fresh read (at most 16 times).
    ///
    /// The first attempt starts from the watch cache's copy, which saves a store read. Only
    /// a write the store accepts proves that copy was current; any other outcome of that
    /// attempt (a lost race, an error, a no-op) is redone from the store. A dry run never
    /// writes, so it reads the store at once.
    async fn read_modify_write(&self, addr: &Addr<'_>, mutation: Mutation<'_>) -> Result<Reply, ApiError> {
        let mut from_cache = !mutation.dry_run();
        for _ in 0..16 {
            let cached = if from_cache { self.cached_for_write(addr) } else { None };
            from_cache = cached.is_some();
            let (old, revision) = match cached {
                Some(found) => found,
                None => self.read(addr).await.map(|(old, kv)| (old, kv.mod_revision))?,
            };
            let outcome = match mutation {
                Mutation::Write { precondition, options, change, kind } => {
                    self.try_write(addr, &old, revision, precondition, options, change, kind).await
                }
                Mutation::Delete(options) => self.try_delete(addr, &old, revision, options).await,
            };
            match (outcome, from_cache) {
                (Ok(Attempt::Written(reply)), _) => return Ok(reply),
                (_, true) => from_cache = false,
                (Ok(Attempt::Unchanged(reply)), false) => return Ok(reply),
                (Ok(Attempt::LostRace), false) => {}
                (Err(error), false) => return Err(error),
            }
        }
        Err(addr.conflict())
    }

    /// The watch cache's copy of an object and its revision.
    fn cached_for_write(&self, addr: &Addr<'_>) -> Option<(Value, i64)> {
        let cached = self.cache.get(&addr.key())?;
        let value = serde_json::from_slice(&cached.json).ok()?;
        Some((addr.def.from_storage(value), cached.revision))
    }

    /// One attempt of [`Api::write_with_retry`] from `old` at `revision`.
    #[allow(clippy::too_many_arguments)]
    async fn try_write(
        &self,
        addr: &Addr<'_>,
        old: &Value,
        revision: i64,
        precondition: Option<i64>,
        options: &WriteOptions,
        change: &Change<'_>,
        kind: WriteKind,
    ) -> Result<Attempt, ApiError> {
        if precondition.is_some_and(|rv| rv != revision) {
            return Err(addr.conflict());
        }
        let new = change(old)?;
        let mut new = self.prepare_update(addr, kind, new, old)?;
        // Binding is the scheduler's; Kubernetes records no field manager for it.
        if options.track_fields && kind != WriteKind::Binding {
            let now = meta::now_rfc3339();
            let (manager, sub) = (&options.manager, kind.subresource());
            apply::track_update(Some(old), &mut new, manager, Operation::Update, sub, &now, field_schema(addr.def));
        }
        if meta::same_but_bookkeeping(&new, old) {
            return Ok(Attempt::Unchanged(Reply::ok(old.clone())));
        }
        let (taken, freed) = if is_core_service(addr.def) && kind == WriteKind::Main {
            let (taken, freed) = self.services.allocate(&mut new, Some(old))?;
            (Some(taken), Some(freed))
        } else {
            (None, None)
        };
        if options.dry_run {
            if let Some(a) = taken {
                self.services.release(a);
            }
            return Ok(Attempt::Unchanged(Reply::ok(new)));
        }
        match self.commit_update(addr, new, revision).await {
            Ok(reply) => {
                if let Some(a) = freed {
                    self.services.release(a);
                }
                Ok(Attempt::Written(reply))
            }
            Err(error) => {
                if let Some(a) = taken {
                    self.services.release(a);
                }
                match error {
                    ApiError::Conflict(..) if precondition.is_none() => Ok(Attempt::LostRace),
                    other => Err(other),
                }
            }
        }
    }

    /// Stores an updated object; an object being deleted whose last finalizer is gone is
    /// deleted instead.
    async fn commit_update(&self, addr: &Addr<'_>, new: Value, expected: i64) -> Result<Reply, ApiError> {
        if meta::is_deleting(&new) && !has_finalizers(addr.def, &new) && !self.waits_for_agent(addr.def, &new) {
            return match self.store.delete(&addr.key(), Some(expected)).await {
                Ok(kv) => {
                    self.after_delete(addr.def, &new);
                    let mut gone = new;
                    meta::set_resource_version(&mut gone, kv.mod_revision);
                    Ok(Reply::ok(gone))
                }
                Err(skiff_store::Error::Conflict { .. }) => Err(addr.conflict()),
                Err(skiff_store::Error::NotFound(_)) => Err(addr.not_found()),
                Err(other) => Err(store_error(other)),
            };
        }
        match self.store.update(&addr.key(), encode_stored(addr.def, &new)?, expected).await {
            Ok(kv) => {
                let mut new = new;
                meta::set_resource_version(&mut new, kv.mod_revision);
                Ok(Reply::ok(new))
            }
            Err(skiff_store::Error::Conflict { .. }) => Err(addr.conflict()),
            Err(skiff_store::Error::NotFound(_)) => Err(addr.not_found()),
            Err(other) => Err(store_error(other)),
        }
    }

    /// Builds the object to store from the client's `new` and the stored `old`.
    fn prepare_update(&self, addr: &Addr<'_>, kind: WriteKind, new: Value, old: &Value) -> Result<Value, ApiError> {
        let def = addr.def;
        let mut new = match kind {
            // A status write changes only status.
            WriteKind::Status => {
                let mut merged = old.clone();
                merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                if merged["status"].is_null() {
                    merged.as_object_mut().map(|m| m.remove("status"));
                }
                merged
            }
            // namespaces/NAME/finalize changes only spec.finalizers.
            WriteKind::Finalize => {
                let mut merged = old.clone();
                merged["spec"]["finalizers"] = new["spec"]["finalizers"].clone();
                merged
            }
            WriteKind::Binding | WriteKind::Scale => new,
            WriteKind::Main => {
                let mut new = new;
                if def.subresources.status {
                    match old.get("status") {
                        Some(status) => new["status"] = status.clone(),
                        None => {
                            new.as_object_mut().map(|m| m.remove("status"));
                        }
                    }
                }
                new
            }
        };
        // Metadata the client may not change.
        {
            let old_meta = &old["metadata"];
            let new_uid = meta::meta_str(&new, "uid").map(str::to_string);
            if new_uid.as_deref().is_some_and(|uid| Some(uid) != old_meta["uid"].as_str()) {
                return Err(ApiError::Conflict(
                    Target::new(def.group, def.plural, addr.name),
                    format!(
                        "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                        new_uid.unwrap_or_default(),
                        old_meta["uid"].as_str().unwrap_or_default()
                    ),
                ));
            }
            let m = meta::meta_mut(&mut new);
            for kept in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
            ] {
                match old_meta.get(kept) {
                    Some(v) => m.insert(kept.into(), v.clone()),
                    None => m.remove(kept),
                };
            }
            m.remove("selfLink");
        }
        // Adding a finalizer to an object being deleted is forbidden.
        if meta::is_deleting(old) {
            let before = meta::finalizers(old);
            if meta::finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid_one(
                    addr.invalid_target(),
                    FieldError::forbidden(
                        "metadata.finalizers",
                        "no new finalizers can be added if the object is being deleted",
                    ),
                ));
            }
        }
        // No defaulting here: `new` is defaulted already, decoded from the request
        // (decode_as) or made from the stored object by a subresource (a binding, a
        // status condition, a scale), as Kubernetes' subresource writes are.
        let rules = UpdateRules { prepare: kind == WriteKind::Main, validate: !kind.is_internal() };
        let kind_errors = def.strategy.prepare_update(&mut new, old, rules);
        let spec_write = kind == WriteKind::Main || kind.is_internal();
        if def.tracks_generation && spec_write && !meta::same_spec(&new, old) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta::meta_mut(&mut new).insert("generation".into(), json!(generation));
        }
        if rules.validate {
            let mut errors = self.validate_meta(def, &new);
            errors.extend(kind_errors);
            if !errors.is_empty() {
                return Err(ApiError::Invalid(addr.invalid_target(), errors));
            }
        }
        Ok(new)
    }

    /// A pod bound to a node is removed by its node agent once its containers stop.
    fn waits_for_agent(&self, def: &ResourceDef, object: &Value) -> bool {
        is_core_pod(def)
            && object["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty())
            && object["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) > 0
    }

    fn after_delete(&self, def: &ResourceDef, object: &Value) {
        if is_core_service(def) {
            self.services.release(ServiceAllocator::held_by(object));
        }
    }

    pub async fn delete(&self, addr: &Addr<'_>, options: &DeleteOptions) -> Result<Reply, ApiError> {
        self.read_modify_write(addr, Mutation::Delete(options)).await
    }

    /// One attempt of [`Api::delete`] from `old` at `revision`.
    async fn try_delete(
        &self,
        addr: &Addr<'_>,
        old: &Value,
        revision: i64,
        options: &DeleteOptions,
    ) -> Result<Attempt, ApiError> {
        if let Some(uid) = &options.uid {
            let actual = meta::meta_str(old, "uid").unwrap_or_default();
            if uid != actual {
                return Err(ApiError::Conflict(
                    Target::new(addr.def.group, addr.def.plural, addr.name),
                    format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                ));
            }
        }
        if let Some(rv) = &options.resource_version {
            if parse_rv(rv)? != revision {
                return Err(ApiError::Conflict(
                    Target::new(addr.def.group, addr.def.plural, addr.name),
                    format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        revision
                    ),
                ));
            }
        }
        let Some(pending) = self.deletion_in_progress(addr.def, old, options) else {
            if options.dry_run {
                return Ok(Attempt::Unchanged(self.deleted_reply(addr, old.clone())));
            }
            let result = self.store.delete(&addr.key(), Some(revision)).await;
            return stored_attempt(addr, result, |kv| {
                self.after_delete(addr.def, old);
                let mut gone = old.clone();
                meta::set_resource_version(&mut gone, kv.mod_revision);
                self.deleted_reply(addr, gone)
            });
        };
        if meta::same_but_bookkeeping(&pending, old) || options.dry_run {
            return Ok(Attempt::Unchanged(Reply::ok(pending)));
        }
        let result = self.store.update(&addr.key(), encode_stored(addr.def, &pending)?, revision).await;
        stored_attempt(addr, result, |kv| {
            let mut pending = pending;
            meta::set_resource_version(&mut pending, kv.mod_revision);
            Reply::ok(pending)
        })
    }

    /// When the object cannot go at once (finalizers, graceful pod termination, foreground
    /// or orphan propagation), the object marked for deletion; None when it can go now.
    fn deletion_in_progress(&self, def: &ResourceDef, old: &Value, options: &DeleteOptions) -> Option<Value> {
        let mut object = old.clone();
        let mut finalizers = meta::finalizers(old);
        match options.propagation.as_deref() {
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into())
            }
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
            _ => {}
        }
        // Graceful termination: a pod on a node gets time to stop its containers.
        let bound_pod = is_core_pod(def) && old["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        let terminal = matches!(old["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        let grace = if bound_pod && !terminal {
            let default = old["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
            options.grace_period.unwrap_or(default).max(0)
        } else {
            0
        };
        let current_grace = old["metadata"]["deletionGracePeriodSeconds"].as_i64();
        let namespace_finalizers = is_core_namespace(def) && spec_finalizers(old);
        if finalizers.is_empty() && grace == 0 && !namespace_finalizers {
            return None;
        }
        let m = meta::meta_mut(&mut object);
        if !finalizers.is_empty() {
            m.insert("finalizers".into(), json!(finalizers));
        }
        // A second delete may shorten the grace period, never lengthen it.
        let shorten = current_grace.is_none_or(|g| grace < g);
        if !meta::is_deleting(old) || shorten {
            m.insert("deletionTimestamp".into(), json!(meta::rfc3339_in(grace)));
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        }
        if is_core_namespace(def) {
            object["status"]["phase"] = json!("Terminating");
        }
        Some(object)
    }

    fn deleted_reply(&self, addr: &Addr<'_>, gone: Value) -> Reply {
        if is_core_pod(addr.def) || is_core_namespace(addr.def) {
            return Reply::ok(gone);
        }
        Reply::ok(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": addr.name,
                "group": addr.def.group,
                "kind": addr.def.plural,
                "uid": gone["metadata"]["uid"],
            },
        }))
    }

    /// DELETE on a collection: deletes every listed object, returns them as a list.
    pub async fn delete_collection(
        &self,
        def: &ResourceDef,
        namespace: Option<&str>,
        query: &Query,
        options: &DeleteOptions,
    ) -> Result<Reply, ApiError> {
        let list: Value = serde_json::from_slice(&self.list(def, namespace, query).await?)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut deleted = Vec::new();
        for item in list["items"].as_array().into_iter().flatten() {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            let ns = item["metadata"]["namespace"].as_str();
            let addr = Addr { def, namespace: ns, name };
            match self.delete(&addr, options).await {
                Ok(_) => deleted.push(item.clone()),
                Err(ApiError::NotFound(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(Reply::ok(json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.api_version(),
            "metadata": { "resourceVersion": list["metadata"]["resourceVersion"] },
            "items": deleted,
        })))
    }

    /// Waits until the watch cache has caught up with the store (a consistent read).
    pub async fn sync_cache(&self) -> Result<i64, ApiError> {
        let current = self.store.current_revision().await.map_err(store_error)?;
        if !self.cache.wait_for(current, CACHE_WAIT).await {
            return Err(ApiError::Timeout("the watch cache did not catch up with the store in time".into()));
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_bytes_are_the_object_without_its_resource_version() {
        let registry = skiff_api::builtins::builtin_registry();
        let def = registry.get("", "v1", "configmaps").unwrap();
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "resourceVersion": "7", "labels": {"a": "b"}},
            "data": {"k": "v"},
        });
        let stored: Value = serde_json::from_slice(&encode_stored(&def, &object).unwrap()).unwrap();
        let mut expected = object.clone();
        meta::meta_mut(&mut expected).remove("resourceVersion");
        assert_eq!(stored, expected);
    }
}
