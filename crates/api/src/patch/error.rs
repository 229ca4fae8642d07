//! How a failed strategic merge patch is answered, as the Kubernetes API server
//! answers it (`interpretStrategicMergePatchError` in the apiserver's patch handler).

use serde_json::{json, Value};

use crate::ApiError;

/// The message of the 415 a custom resource gets for a strategic merge patch: CRDs
/// only accept these patch types (apiextensions-apiserver's `crdHandler`).
pub const CUSTOM_RESOURCE_UNSUPPORTED: &str = "the body of the request was in an unknown format - accepted media \
     types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

/// What kind of answer an error gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchErrorKind {
    /// 400 BadRequest: a malformed directive (`$retainKeys`, `$setElementOrder/...`,
    /// `$deleteFromPrimitiveList/...`) or a body that is not a JSON object.
    BadRequest,
    /// 422 Invalid with the generic message: lists of lists (Kubernetes drops the
    /// detail; `message()` keeps it for logs).
    Unprocessable,
    /// 500 with no reason: every other strategicpatch error (a list element without
    /// its merge key, an unknown `$patch`, type mismatches...). Kubernetes passes these
    /// through unconverted, so kubectl prints `Error from server: <message>`.
    Unconverted,
    /// Kubernetes' handler panics on this input (comparing or hashing maps, a null
    /// first list element); the API server answers 500 with a plain-text body.
    Panic,
    /// 415 UnsupportedMediaType: strategic merge patch of a custom resource.
    UnsupportedMediaType,
}

/// A strategic merge patch the server refuses, with Kubernetes' message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatchError {
    pub kind: PatchErrorKind,
    pub message: String,
}

impl PatchError {
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self { kind: PatchErrorKind::BadRequest, message: message.into() }
    }

    pub(super) fn unprocessable(message: impl Into<String>) -> Self {
        Self { kind: PatchErrorKind::Unprocessable, message: message.into() }
    }

    pub(super) fn unconverted(message: impl Into<String>) -> Self {
        Self { kind: PatchErrorKind::Unconverted, message: message.into() }
    }

    pub(super) fn panic(message: impl Into<String>) -> Self {
        Self { kind: PatchErrorKind::Panic, message: message.into() }
    }

    pub(super) fn unsupported_media_type() -> Self {
        Self { kind: PatchErrorKind::UnsupportedMediaType, message: CUSTOM_RESOURCE_UNSUPPORTED.into() }
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self.kind {
            PatchErrorKind::BadRequest => 400,
            PatchErrorKind::Unprocessable => 422,
            PatchErrorKind::Unconverted | PatchErrorKind::Panic => 500,
            PatchErrorKind::UnsupportedMediaType => 415,
        }
    }

    /// The `Status.reason`; empty where Kubernetes sets none.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            PatchErrorKind::BadRequest => "BadRequest",
            PatchErrorKind::Unprocessable => "Invalid",
            PatchErrorKind::Unconverted => "",
            PatchErrorKind::Panic => "InternalError",
            PatchErrorKind::UnsupportedMediaType => "UnsupportedMediaType",
        }
    }

    /// The `Status.message` the client sees.
    pub fn client_message(&self) -> String {
        match self.kind {
            PatchErrorKind::Unprocessable => "the server rejected our request due to an error in our request".into(),
            PatchErrorKind::Panic => PANIC_BODY.into(),
            _ => self.message.clone(),
        }
    }

    /// The response body for `PatchErrorKind::Panic`, sent as `text/plain`.
    pub fn panic_body() -> &'static str {
        PANIC_BODY
    }

    /// The `Status` object Kubernetes answers with. For `Panic`, Kubernetes sends
    /// `panic_body()` as `text/plain` instead (kubectl then reports an InternalError);
    /// this is the nearest Status.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.client_message(),
            "code": self.code(),
        });
        if let Some(map) = status.as_object_mut() {
            match self.kind {
                PatchErrorKind::Unconverted => {}
                PatchErrorKind::Unprocessable => {
                    map.insert("reason".into(), self.reason().into());
                    map.insert("details".into(), json!({}));
                }
                _ => {
                    map.insert("reason".into(), self.reason().into());
                }
            }
        }
        status
    }
}

const PANIC_BODY: &str = "This request caused apiserver to panic. Look in the logs for details.";

/// The exact answer, as an `ApiError::Status`.
impl From<PatchError> for ApiError {
    fn from(err: PatchError) -> Self {
        ApiError::Status(err.code(), err.status())
    }
}
