//! A policy's identity: the one key by which the controller, the prober and the metrics know a
//! `FailoverPolicy` (runtimes, backoff, probe targets, facts, metric labels), instead of a
//! `"namespace/name"` string built in one place and split in another.

use std::fmt;
use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use prometheus_client::encoding::EncodeLabelSet;

use super::FailoverPolicy;

/// Namespace and name of a FailoverPolicy. As metric labels: `namespace` and `name`, never one
/// combined label. Cloning costs two reference-count bumps.
#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PolicyId {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl PolicyId {
    pub fn new(namespace: &str, name: &str) -> Self {
        PolicyId {
            namespace: Arc::from(namespace),
            name: Arc::from(name),
        }
    }

    /// The identity of a policy read from the API (policies are namespaced; one without a
    /// namespace, never stored, gets an empty one).
    pub fn of(policy: &FailoverPolicy) -> Self {
        PolicyId::new(&policy.namespace().unwrap_or_default(), &policy.name_any())
    }

    /// The reference the controller's reconcile queue takes.
    pub fn object_ref(&self) -> ObjectRef<FailoverPolicy> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }
}

impl From<&ObjectRef<FailoverPolicy>> for PolicyId {
    fn from(r: &ObjectRef<FailoverPolicy>) -> Self {
        PolicyId::new(r.namespace.as_deref().unwrap_or_default(), &r.name)
    }
}

/// `namespace/name`, as kubectl writes it: the one rendering in logs and messages.
impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_between_references_and_text() {
        let id = PolicyId::new("shop", "web");
        assert_eq!(id.to_string(), "shop/web");
        let r = id.object_ref();
        assert_eq!(
            r.to_string(),
            "FailoverPolicy.v1alpha1.ingressfailover.io/web.shop"
        );
        assert_eq!(PolicyId::from(&r), id);
    }
}
