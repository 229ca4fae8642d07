//! Errors as Kubernetes reports them: every failure maps once to a `Status` object with
//! the HTTP code, reason and details that kubectl and client libraries expect.

use serde_json::{json, Value};

/// The kind of a field error, named as Kubernetes names it in `details.causes[].reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorType {
    Required,
    Invalid,
    NotFound,
    NotSupported,
    Forbidden,
    Duplicate,
    TooLong,
    TooMany,
    TypeInvalid,
}

impl FieldErrorType {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::NotFound => "FieldValueNotFound",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::TypeInvalid => "FieldValueTypeInvalid",
        }
    }
}

/// One invalid field: `spec.containers[0].image: Required value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    /// The field path, e.g. `metadata.labels` or `spec.containers[0].image`.
    pub field: String,
    /// The full cause message, e.g. `Invalid value: "Foo": must be lowercase`.
    pub message: String,
}

/// Renders a bad value the way Go's `%#v` shows strings and numbers in field errors.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message =
            if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        Self { kind: FieldErrorType::Required, field: field.into(), message }
    }

    pub fn invalid(field: impl Into<String>, value: impl Into<Value>, detail: &str) -> Self {
        let mut message = format!("Invalid value: {}", render_value(&value.into()));
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        Self { kind: FieldErrorType::Invalid, field: field.into(), message }
    }

    pub fn not_supported(field: impl Into<String>, value: impl Into<Value>, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let message =
            format!("Unsupported value: {}: supported values: {}", render_value(&value.into()), quoted.join(", "));
        Self { kind: FieldErrorType::NotSupported, field: field.into(), message }
    }

    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        let message = format!("Not found: {}", render_value(&value.into()));
        Self { kind: FieldErrorType::NotFound, field: field.into(), message }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self { kind: FieldErrorType::Forbidden, field: field.into(), message: format!("Forbidden: {detail}") }
    }

    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        let message = format!("Duplicate value: {}", render_value(&value.into()));
        Self { kind: FieldErrorType::Duplicate, field: field.into(), message }
    }

    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        let message = format!("Too long: may not be more than {max} bytes");
        Self { kind: FieldErrorType::TooLong, field: field.into(), message }
    }

    /// The message Kubernetes prints for this error inside an aggregate.
    pub fn display(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// Which object an error is about, for `Status.details`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// API group ("" for core).
    pub group: String,
    /// The resource plural (for NotFound/AlreadyExists/Conflict) or the Kind (for Invalid).
    pub kind: String,
    pub name: String,
}

impl Target {
    pub fn new(group: &str, kind: &str, name: &str) -> Self {
        Self { group: group.into(), kind: kind.into(), name: name.into() }
    }

    /// `pods "x"` or `deployments.apps "x"`, as Kubernetes qualifies a resource.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            format!("{} {:?}", self.kind, self.name)
        } else {
            format!("{}.{} {:?}", self.kind, self.group, self.name)
        }
    }
}

/// Every error the API can answer with.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFoundPath(String),
    #[error("{} not found", .0.qualified())]
    NotFound(Target),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{} already exists", .0.qualified())]
    AlreadyExists(Target),
    #[error("Operation cannot be fulfilled on {}: {}", .0.qualified(), .1)]
    Conflict(Target, String),
    /// 410 Expired: a resourceVersion or continue token older than the kept history.
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{} {:?} is invalid", .0.kind, .0.name)]
    Invalid(Target, Vec<FieldError>),
    #[error("{0}")]
    RequestEntityTooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Timeout(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// A Status built elsewhere (e.g. server-side apply conflicts with their causes).
    #[error("{}", .1["message"].as_str().unwrap_or_default())]
    Status(u16, Value),
}

impl ApiError {
    pub fn conflict_modified(target: Target) -> Self {
        ApiError::Conflict(
            target,
            "the object has been modified; please apply your changes to the latest version and try again".into(),
        )
    }

    pub fn invalid_one(target: Target, error: FieldError) -> Self {
        ApiError::Invalid(target, vec![error])
    }

    pub fn code(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized => 401,
            Self::Forbidden(_) => 403,
            Self::NotFoundPath(_) | Self::NotFound(_) => 404,
            Self::MethodNotAllowed => 405,
            Self::NotAcceptable(_) => 406,
            Self::AlreadyExists(_) | Self::Conflict(..) => 409,
            Self::Expired(_) => 410,
            Self::RequestEntityTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::Invalid(..) => 422,
            Self::TooManyRequests(_) => 429,
            Self::Timeout(_) => 504,
            Self::Internal(_) => 500,
            Self::Status(code, _) => *code,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden(_) => "Forbidden",
            Self::NotFoundPath(_) | Self::NotFound(_) => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotAcceptable(_) => "NotAcceptable",
            Self::AlreadyExists(_) => "AlreadyExists",
            Self::Conflict(..) => "Conflict",
            Self::Expired(_) => "Expired",
            Self::RequestEntityTooLarge(_) => "RequestEntityTooLarge",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Self::Invalid(..) => "Invalid",
            Self::TooManyRequests(_) => "TooManyRequests",
            Self::Timeout(_) => "Timeout",
            Self::Internal(_) => "InternalError",
            Self::Status(..) => "",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::Invalid(target, errors) => {
                let what = format!("{} {:?} is invalid", target.kind, target.name);
                match errors.as_slice() {
                    [one] => format!("{what}: {}", one.display()),
                    many => {
                        let all: Vec<String> = many.iter().map(FieldError::display).collect();
                        format!("{what}: [{}]", all.join(", "))
                    }
                }
            }
            other => other.to_string(),
        }
    }

    /// The `Status` object sent to the client.
    pub fn status(&self) -> Value {
        if let Self::Status(_, status) = self {
            return status.clone();
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            Self::NotFound(t) | Self::AlreadyExists(t) | Self::Conflict(t, _) => Some(json!({
                "name": t.name, "group": t.group, "kind": t.kind,
            })),
            Self::Invalid(t, errors) => Some(json!({
                "name": t.name, "group": t.group, "kind": t.kind,
                "causes": errors.iter().map(|e| json!({
                    "reason": e.kind.reason(), "message": e.message, "field": e.field,
                })).collect::<Vec<_>>(),
            })),
            Self::Internal(message) => Some(json!({
                "causes": [{ "message": message }],
            })),
            _ => None,
        };
        if let Some(mut details) = details {
            // Kubernetes omits empty strings in details.
            if let Some(map) = details.as_object_mut() {
                map.retain(|_, v| v.as_str() != Some(""));
            }
            status["details"] = details;
        }
        status
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_names_group_qualified_resource() {
        let err = ApiError::NotFound(Target::new("apps", "deployments", "web"));
        assert_eq!(err.message(), r#"deployments.apps "web" not found"#);
        let status = err.status();
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["group"], "apps");
        let core = ApiError::NotFound(Target::new("", "pods", "p"));
        assert_eq!(core.message(), r#"pods "p" not found"#);
        assert!(core.status()["details"].get("group").is_none());
    }

    #[test]
    fn invalid_aggregates_causes() {
        let err = ApiError::Invalid(
            Target::new("", "Pod", "p"),
            vec![
                FieldError::required("spec.containers", ""),
                FieldError::invalid("metadata.name", "A", "must be lowercase"),
            ],
        );
        assert_eq!(
            err.message(),
            r#"Pod "p" is invalid: [spec.containers: Required value, metadata.name: Invalid value: "A": must be lowercase]"#
        );
        let status = err.status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["details"]["causes"][1]["reason"], "FieldValueInvalid");
        assert_eq!(status["details"]["causes"][1]["field"], "metadata.name");
    }
}
