//! The HTTP edge: authentication, routing to REST verbs, content negotiation, and
//! mapping every error to a `Status` response.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use skiff_api::{ApiError, ResourceDef};

use crate::discovery;
use crate::patch::{self, PatchType};
use crate::pki::UserInfo;
use crate::representation::{Representation, WatchConverter};
use crate::request::{route, Query, ResourcePath, Route};
use crate::rest::{Addr, Api, DeleteOptions, FieldValidation, Reply, WriteKind, WriteOptions};

/// Requests larger than this are refused (Kubernetes' limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

pub struct App {
    pub api: Api,
    /// host:port clients use, for /api's serverAddressByClientCIDRs.
    pub advertise: String,
    /// Requests being served, other than watches: beyond the limit clients get 429 and
    /// retry, instead of the server queueing without bound.
    pub in_flight: InFlight,
    /// The cluster PKI: its CA is served at /cacerts, and it issues agents' serving certificates.
    pub pki: crate::pki::Pki,
    /// The join token whose secret authenticates node agents.
    pub join_token: skiff_client::token::JoinToken,
    /// TLS towards node agents (logs, exec, attach, port-forward, node proxy).
    pub kubelet: crate::nodeproxy::KubeletClient,
}

/// Limits on concurrent requests, as kube-apiserver's max-requests-inflight (400) and
/// max-mutating-requests-inflight (200).
pub struct InFlight {
    reads: tokio::sync::Semaphore,
    writes: tokio::sync::Semaphore,
}

impl InFlight {
    pub fn new(reads: usize, writes: usize) -> Self {
        InFlight { reads: tokio::sync::Semaphore::new(reads), writes: tokio::sync::Semaphore::new(writes) }
    }

    fn admit(&self, method: &Method) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
        let pool = if matches!(*method, Method::GET | Method::HEAD) { &self.reads } else { &self.writes };
        pool.try_acquire().map_err(|_| ApiError::TooManyRequests("Too many requests, please try again later.".into()))
    }
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight::new(400, 200)
    }
}

fn json_response(code: u16, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(crate) fn value_response(code: u16, body: &Value) -> Response<Body> {
    json_response(code, Bytes::from(serde_json::to_vec(body).unwrap_or_default()))
}

pub fn error_response(error: &ApiError) -> Response<Body> {
    if error.code() >= 500 {
        tracing::warn!(%error, "request failed");
    }
    let status = error.status();
    let mut response = value_response(error.code(), &status);
    // Clients (client-go) retry a 429 by themselves only when told when: the server's
    // own load limit says so; an error carrying retryAfterSeconds (e.g. an eviction that
    // a budget refuses for now) says its own.
    let retry_after = match error {
        ApiError::TooManyRequests(_) => Some(1),
        _ => status["details"]["retryAfterSeconds"].as_u64().filter(|s| *s > 0),
    };
    if let Some(seconds) = retry_after {
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

fn reply_response(reply: Reply) -> Response<Body> {
    let mut response = value_response(reply.code, &reply.body);
    for warning in &reply.warnings {
        // RFC 7234 warn-code 299 with warn-agent "-", as Kubernetes sends them.
        let text = format!("299 - {}", serde_json::Value::String(warning.clone()));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// Paths served without authentication.
fn is_public(path: &str) -> bool {
    matches!(path.trim_end_matches('/'), "/livez" | "/readyz" | "/healthz" | "/version" | "/cacerts")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
        || path.starts_with("/healthz/")
}

pub async fn handle(app: Arc<App>, request: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    let user = request.extensions().get::<UserInfo>().cloned().or_else(|| {
        let authorization = request.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
        crate::token::authenticate(&app.join_token, authorization)
    });
    let response = match serve(&app, user, request).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    };
    Ok(response)
}

async fn serve(
    app: &App,
    user: Option<UserInfo>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, ApiError> {
    let path = request.uri().path().to_string();
    if is_public(&path) {
        return Ok(match path.trim_end_matches('/') {
            "/version" => value_response(200, &discovery::version()),
            // The cluster CA, for agents joining with a token (which pins its hash), as k3s serves it.
            "/cacerts" => {
                let mut r = Response::new(Body::from(app.pki.ca_cert_pem.clone()));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                r
            }
            _ => {
                let mut r = Response::new(Body::from("ok"));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                r
            }
        });
    }
    if user.is_none() {
        return Err(ApiError::Unauthorized);
    }
    // OpenAPI v2 is served as JSON only. kubectl asks for it in protobuf alone, and only
    // to validate kinds missing from OpenAPI v3; it treats 404 as "no schema" and goes on,
    // where a 406 would fail the whole command.
    if path == "/openapi/v2" && check_accept(request.headers()).is_err() {
        return Err(ApiError::NotFoundPath("OpenAPI v2 is served as application/json only".into()));
    }
    if path == crate::servingcert::PATH {
        return crate::servingcert::serve(app, user.as_ref(), request).await;
    }
    // Long-running streams (logs, exec, port-forward) are not counted against the
    // in-flight limits, as kube-apiserver exempts them.
    if let Route::Resource(target) = route(&path) {
        let sub = target.subresource.as_deref().unwrap_or_default();
        if target.group.is_empty() && target.version == "v1" && crate::nodeproxy::serves(&target.plural, sub) {
            return crate::nodeproxy::serve(app, &target, request).await;
        }
    }
    check_accept(request.headers())?;
    let is_watch =
        request.uri().query().is_some_and(|q| Query::parse(Some(q)).flag("watch")) || path.contains("/watch/");
    let _permit = if is_watch { None } else { Some(app.in_flight.admit(request.method())?) };
    let registry = &app.api.registry;
    let not_found = || ApiError::NotFoundPath("the server could not find the requested resource".into());
    if path == "/openapi/v2" {
        return Ok(value_response(200, &crate::openapi::v2(registry)));
    }
    if let Some(rest) = path.strip_prefix("/openapi/v3") {
        let doc = match rest.trim_matches('/') {
            "" => Some(crate::openapi::root(registry)),
            gv => crate::openapi::group_version(registry, gv),
        };
        return doc.map(|d| value_response(200, &d)).ok_or_else(not_found);
    }
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let aggregated = discovery::wants_aggregated(accept);
    match route(&path) {
        Route::CoreVersions | Route::Groups if aggregated => {
            let mut response =
                value_response(200, &discovery::aggregated(registry, route(&path) == Route::CoreVersions));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(discovery::AGGREGATED_V2));
            Ok(response)
        }
        Route::CoreVersions => Ok(value_response(200, &discovery::core_versions(&app.advertise))),
        Route::Groups => Ok(value_response(200, &discovery::group_list(registry))),
        Route::Group(group) => {
            discovery::group(registry, &group).map(|d| value_response(200, &d)).ok_or_else(not_found)
        }
        Route::Resources { group, version } => {
            discovery::resource_list(registry, &group, &version).map(|d| value_response(200, &d)).ok_or_else(not_found)
        }
        Route::Resource(target) => {
            let def = registry.get(&target.group, &target.version, &target.plural).ok_or_else(not_found)?;
            let user = user.unwrap_or_else(|| UserInfo { name: String::new(), groups: Vec::new() });
            resource(app, &def, target, &user, request).await
        }
        Route::Other => Err(not_found()),
    }
}

/// Only JSON is served; a client that accepts nothing else gets 406.
fn check_accept(headers: &http::HeaderMap) -> Result<(), ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let acceptable = accept.split(',').any(|part| {
        let media = part.split(';').next().unwrap_or("").trim();
        matches!(
            media,
            "application/json"
                | "*/*"
                | "application/*"
                | ""
                | "application/json-patch+json"
                | "application/merge-patch+json"
        )
    });
    if acceptable {
        Ok(())
    } else {
        Err(ApiError::NotAcceptable(format!(
            "only the following media types are accepted: application/json (got {accept:?})"
        )))
    }
}

pub(crate) async fn read_body(
    request: Request<hyper::body::Incoming>,
) -> Result<(http::request::Parts, Bytes), ApiError> {
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    let bytes = limited
        .collect()
        .await
        .map_err(|_| ApiError::RequestEntityTooLarge("the request body is too large (limit 3 MiB)".into()))?
        .to_bytes();
    Ok((parts, bytes))
}

/// Decodes a JSON, YAML or Kubernetes-protobuf request body into an object.
fn decode_body(parts: &http::request::Parts, body: &[u8]) -> Result<Value, ApiError> {
    let content_type =
        parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let value: Value = match media {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the body of the request was in an unknown format: {e}")))?,
        "application/yaml" => serde_yaml::from_slice(body).map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?,
        // Typed client-go clients (and so kubectl's create/whoami/...) send protobuf.
        skiff_api::protobuf::CONTENT_TYPE => {
            skiff_api::protobuf::decode(body).map_err(|e| ApiError::BadRequest(format!("error decoding protobuf: {e}")))?
        }
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other:?})"
            )))
        }
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::BadRequest("the body of the request must be an object".into()))
    }
}

/// A create or update body, and the warnings about keys it repeats (JSON bodies; a
/// repeated key keeps its last value). Under fieldValidation=Strict a repeat is a 400,
/// as in Kubernetes' strict decoding.
fn decode_object(
    parts: &http::request::Parts,
    body: &[u8],
    validation: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let object = decode_body(parts, body)?;
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| matches!(t.split(';').next().unwrap_or("").trim(), "application/json" | "" | "*/*"));
    if validation == FieldValidation::Ignore || !json {
        return Ok((object, Vec::new()));
    }
    let duplicates: Vec<String> =
        skiff_api::validation::duplicate_fields(body).iter().map(|f| format!("duplicate field {f:?}")).collect();
    if validation == FieldValidation::Strict && !duplicates.is_empty() {
        return Err(ApiError::BadRequest(format!("strict decoding error: {}", duplicates.join(", "))));
    }
    Ok((object, duplicates))
}

fn with_warnings(mut warnings: Vec<String>, mut reply: Reply) -> Reply {
    warnings.append(&mut reply.warnings);
    reply.warnings = warnings;
    reply
}

/// DeleteOptions from the query string and an optional body in any accepted format.
fn delete_options(query: &Query, parts: &http::request::Parts, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { Value::Null } else { decode_body(parts, body)? };
    DeleteOptions::parse(query, &body)
}

async fn resource(
    app: &App,
    def: &ResourceDef,
    target: ResourcePath,
    user: &UserInfo,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, ApiError> {
    let api = &app.api;
    let query = Query::parse(request.uri().query());
    let method = request.method().clone();
    let watch = target.watch_path || query.flag("watch");
    if !def.allows(verb(&method, target.name.is_some(), watch)) {
        return Err(ApiError::MethodNotAllowed);
    }
    if def.ephemeral {
        let (parts, body) = read_body(request).await?;
        let review = crate::rest::decode_as(def, decode_body(&parts, &body)?, FieldValidation::Ignore)?.0;
        return Ok(reply_response(Reply::created(answer_review(review, user))));
    }
    if target.namespace.is_some() && !def.namespaced {
        return Err(ApiError::NotFoundPath("the server could not find the requested resource".into()));
    }
    let namespace = target.namespace.as_deref();
    let subresource = target.subresource.as_deref();
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let repr = Representation::negotiate(accept, &query)?;
    let user_agent = request.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let write = WriteOptions::new(&query, user_agent)?;
    // Objects of the resource's own kind may be shown as a Table or as metadata.
    let shown = |reply: Reply| {
        let body = repr.object(def, reply.body);
        let mut response = reply_response(Reply { body, ..reply });
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(repr.content_type()));
        response
    };
    if let Some(sub) = subresource {
        let known = match sub {
            "status" => def.subresources.status,
            "scale" => def.subresources.scale,
            "binding" => def.subresources.binding,
            "eviction" => def.subresources.eviction,
            "finalize" => def.group.is_empty() && def.plural == "namespaces",
            _ => false,
        };
        if !known {
            return Err(ApiError::NotFoundPath("the server could not find the requested resource".into()));
        }
    }
    let Some(name) = target.name.as_deref() else {
        // Collection verbs.
        return match method {
            Method::GET if watch => {
                let stream = api.watch(def, namespace, &query).await?;
                let mut converter = WatchConverter::new(repr, def);
                let body = Body::from_stream(stream.map(move |line| Ok::<_, Infallible>(converter.convert(line))));
                let mut response = Response::new(body);
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(repr.content_type()));
                Ok(response)
            }
            Method::GET => {
                let list = repr.list(def, api.list(def, namespace, &query).await?)?;
                let mut response = json_response(200, list);
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(repr.content_type()));
                Ok(response)
            }
            Method::POST => {
                let (parts, body) = read_body(request).await?;
                let (object, duplicates) = decode_object(&parts, &body, write.validation)?;
                Ok(shown(with_warnings(duplicates, api.create(def, namespace, object, &write).await?)))
            }
            Method::DELETE => {
                let (parts, body) = read_body(request).await?;
                let options = delete_options(&query, &parts, &body)?;
                Ok(reply_response(api.delete_collection(def, namespace, &query, &options).await?))
            }
            _ => Err(ApiError::MethodNotAllowed),
        };
    };
    if def.namespaced && namespace.is_none() {
        return Err(ApiError::NotFoundPath("the server could not find the requested resource".into()));
    }
    let addr = Addr { def, namespace, name };
    match (method, subresource) {
        (Method::GET, Some("scale")) => Ok(reply_response(api.get_scale(&addr).await?)),
        (Method::GET, None | Some("status")) => Ok(shown(api.get(&addr, &query).await?)),
        (Method::POST, Some("binding")) => {
            let (parts, body) = read_body(request).await?;
            let binding = decode_body(&parts, &body)?;
            Ok(reply_response(api.bind(&addr, binding, &write).await?))
        }
        (Method::POST, Some("eviction")) => {
            let (parts, body) = read_body(request).await?;
            let eviction = decode_body(&parts, &body)?;
            Ok(reply_response(api.evict(&addr, eviction, &write).await?))
        }
        (Method::PUT, Some("scale")) => {
            let (parts, body) = read_body(request).await?;
            let scale = decode_body(&parts, &body)?;
            Ok(reply_response(api.update_scale(&addr, None, scale, &write).await?))
        }
        (Method::PUT, sub) => {
            let kind = WriteKind::for_subresource(sub)?;
            let (parts, body) = read_body(request).await?;
            let (object, duplicates) = decode_object(&parts, &body, write.validation)?;
            Ok(shown(with_warnings(duplicates, api.update(&addr, kind, object, &write).await?)))
        }
        (Method::PATCH, sub) => {
            let content_type =
                request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let kind = PatchType::from_content_type(&content_type)?;
            let (_, body) = read_body(request).await?;
            if sub == Some("scale") {
                let patch = patch::parse(kind, &body)?;
                return Ok(reply_response(api.update_scale(&addr, Some(kind), patch, &write).await?));
            }
            let target = WriteKind::for_subresource(sub)?;
            if target == WriteKind::Finalize {
                return Err(ApiError::MethodNotAllowed);
            }
            Ok(shown(api.patch(&addr, target, kind, &body, &write).await?))
        }
        (Method::DELETE, None) => {
            let (parts, body) = read_body(request).await?;
            let options = delete_options(&query, &parts, &body)?;
            Ok(reply_response(api.delete(&addr, &options).await?))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// The Kubernetes verb of a request, for checking what a resource allows.
fn verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match (method.as_str(), named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// Fills in the answer of a review; SelfSubjectReview is the only one served so far.
fn answer_review(mut review: Value, user: &UserInfo) -> Value {
    review["status"] = serde_json::json!({ "userInfo": { "username": user.name, "groups": user.groups } });
    review
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_beyond_the_limit_get_429() {
        let limits = InFlight::new(1, 1);
        let read = limits.admit(&Method::GET).unwrap();
        let write = limits.admit(&Method::POST).unwrap();
        let refused = limits.admit(&Method::GET).unwrap_err();
        assert_eq!(refused.code(), 429);
        assert_eq!(refused.reason(), "TooManyRequests");
        assert_eq!(error_response(&refused).headers()[header::RETRY_AFTER], "1");
        drop((read, write));
        assert!(limits.admit(&Method::GET).is_ok(), "a finished request frees its place");
    }

    #[test]
    fn only_json_is_acceptable() {
        let mut headers = http::HeaderMap::new();
        headers
            .insert(header::ACCEPT, HeaderValue::from_static("application/vnd.kubernetes.protobuf,application/json"));
        assert!(check_accept(&headers).is_ok());
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.kubernetes.protobuf"));
        assert_eq!(check_accept(&headers).unwrap_err().code(), 406);
    }
}
