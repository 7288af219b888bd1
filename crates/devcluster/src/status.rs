//! Kubernetes `Status` errors.
//!
//! Clients (kube-rs, client-go, kubectl) branch on `reason` and `code`, not on the message, so
//! every failure the plane returns is a `meta/v1 Status` with the same reason/details the real
//! apiserver would use.

use serde_json::{Value, json};

/// An API failure, rendered as a Kubernetes `Status` object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` of the Status (name, group, kind, causes).
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429/503).
    pub retry_after: Option<u64>,
}

/// Result type of the request handlers.
pub type ApiResult<T> = Result<T, ApiError>;

/// Identifies the object an error is about: `(group, plural, name)`.
pub type Subject<'a> = (&'a str, &'a str, &'a str);

fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

fn details(subject: Subject<'_>) -> Value {
    let (group, plural, name) = subject;
    json!({"name": name, "group": group, "kind": plural})
}

impl ApiError {
    /// A bare error with no details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 for a path the plane does not serve at all.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404 NotFound for one object.
    pub fn not_found(subject: Subject<'_>) -> Self {
        let (group, plural, name) = subject;
        Self {
            details: Some(details(subject)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", qualified(group, plural)),
            )
        }
    }

    /// 409 AlreadyExists on create.
    pub fn already_exists(subject: Subject<'_>) -> Self {
        let (group, plural, name) = subject;
        Self {
            details: Some(details(subject)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", qualified(group, plural)),
            )
        }
    }

    /// 409 Conflict on a stale resourceVersion (or a failed precondition).
    pub fn conflict(subject: Subject<'_>, why: &str) -> Self {
        let (group, plural, name) = subject;
        Self {
            details: Some(details(subject)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    qualified(group, plural)
                ),
            )
        }
    }

    /// The standard stale-resourceVersion conflict.
    pub fn stale(subject: Subject<'_>) -> Self {
        Self::conflict(
            subject,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with one cause per offending field.
    pub fn invalid(kind: &str, subject: Subject<'_>, causes: Vec<FieldCause>) -> Self {
        let (group, _, name) = subject;
        // As apimachinery's aggregate error: each message once, several in brackets.
        let mut text: Vec<String> = Vec::new();
        for t in causes.iter().map(FieldCause::text) {
            if !text.contains(&t) {
                text.push(t);
            }
        }
        let text = match text.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let causes_json: Vec<Value> = causes
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message(), "field": c.field}))
            .collect();
        let group_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self {
            details: Some(
                json!({"name": name, "group": group, "kind": kind, "causes": causes_json}),
            ),
            ..Self::new(
                422,
                "Invalid",
                format!("{group_kind} \"{name}\" is invalid: {text}"),
            )
        }
    }

    /// 410 Gone for a watch or continue token older than the retained window.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 405 for a verb a resource does not support.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// The `Status` JSON object.
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
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        if let Some(secs) = self.retry_after {
            let d = status
                .as_object_mut()
                .and_then(|o| o.get_mut("details"))
                .and_then(Value::as_object_mut);
            match d {
                Some(d) => {
                    d.insert("retryAfterSeconds".into(), json!(secs));
                }
                None => status["details"] = json!({"retryAfterSeconds": secs}),
            }
        }
        status
    }
}

/// One field-level validation failure (a `StatusCause`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCause {
    /// One of [`k8s_rules::reason`]'s: `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: &'static str,
    /// Dotted field path, e.g. `spec.replicas`.
    pub field: String,
    /// What is wrong.
    pub detail: String,
}

impl FieldCause {
    /// Builds a cause.
    pub fn new(reason: &'static str, field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            reason,
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// `field: message`, as in the Status message.
    fn text(&self) -> String {
        format!("{}: {}", self.field, self.message())
    }

    /// The cause message (without the field, which is separate in a StatusCause).
    fn message(&self) -> String {
        let label = k8s_rules::reason::label(self.reason);
        if self.detail.is_empty() {
            label.to_string()
        } else {
            format!("{label}: {}", self.detail)
        }
    }
}
