//! API errors rendered as real `meta/v1` `Status` objects.

use serde_json::{json, Value};

use super::resources::ResourceType;

/// A failed API call, as the API server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details.name` / `details.kind` / `details.group` of the Status.
    pub details: Option<(String, String, String)>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `pods "x"` / `pods.policy "x"`-style qualified resource name used in messages.
fn qualified(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        rt.plural.to_string()
    } else {
        format!("{}.{}", rt.plural, rt.group)
    }
}

impl ApiError {
    fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = Some((
            name.to_string(),
            rt.plural.to_string(),
            rt.group.to_string(),
        ));
        self
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{}\" not found", qualified(rt), name),
            details: None,
        }
        .with_details(rt, name)
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{}\" already exists", qualified(rt), name),
            details: None,
        }
        .with_details(rt, name)
    }

    /// Optimistic-concurrency failure (stale resourceVersion or failed precondition).
    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self::conflict_on(&qualified(rt), rt, name, why)
    }

    /// A conflict on a named subresource such as `pods/binding`.
    pub fn conflict_on(what: &str, rt: &ResourceType, name: &str, why: &str) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!("Operation cannot be fulfilled on {what} \"{name}\": {why}"),
            details: None,
        }
        .with_details(rt, name)
    }

    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        Self::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
            details: None,
        }
    }

    pub fn invalid(rt: &ResourceType, name: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: message.into(),
            details: None,
        }
        .with_details(rt, name)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: message.into(),
            details: None,
        }
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!("the body of the request was in an unknown format: {content_type}"),
            details: None,
        }
    }

    pub fn not_found_path(path: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ({path})"),
            details: None,
        }
    }

    pub fn expired(message: impl Into<String>) -> Self {
        ApiError {
            code: 410,
            reason: "Expired",
            message: message.into(),
            details: None,
        }
    }

    /// A fault injected by the test; the reason follows the code like the real server's.
    pub fn injected(code: u16) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "",
        };
        ApiError {
            code,
            reason,
            message: format!("injected fault (HTTP {code})"),
            details: None,
        }
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((name, kind, group)) = &self.details {
            let mut details = json!({ "name": name, "kind": kind });
            if !group.is_empty() {
                details["group"] = json!(group);
            }
            status["details"] = details;
        }
        status
    }
}

/// The `Status` a successful call answers with when it has no object to return.
pub fn success(code: u16) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": code,
    })
}
