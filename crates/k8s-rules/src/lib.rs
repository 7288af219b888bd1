//! Kubernetes API rules that ingress-failover and its embedded control plane both apply, kept in
//! one place so that what `ingress-failover check` accepts is what the plane admits:
//!
//! - [`names`]: object names (DNS-1123 label and subdomain, DNS-1035 label) and label keys and
//!   values;
//! - [`openapi`]: a CRD's structural `openAPIV3Schema`: defaulting, pruning, validation;
//! - [`cel`]: a CRD's `x-kubernetes-validations` rules, evaluated with kube's CEL engine.
//!
//! Every rule reports [`FieldError`]s in the apiserver's words.

pub mod cel;
pub mod names;
pub mod openapi;
pub mod reason;

use std::fmt;

/// One problem with one field, in the apiserver's words: `path: message`, where `path` is the
/// Kubernetes field path (`spec.probe.intervalSeconds`, `spec.ingress.ingresses[0]`) and empty
/// for the object as a whole.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldError {
    /// Kubernetes-style field path of the offending value.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A [`FieldError`] with the reason of the `StatusCause` an API server answers it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// One of [`reason`]'s constants, e.g. `FieldValueInvalid`.
    pub reason: &'static str,
    /// The field and the message, which starts with the reason's [`reason::label`].
    pub error: FieldError,
}
