//! What every verb works on: the [`State`] behind the lock, the request's [`Ctx`], list options,
//! and the kinds of write. Shared by the verbs (`api`, `delete`), their helpers (`crd`,
//! `defaults`), the watch and the controller-manager, none of which owns it.

use super::fields::Scope;
use super::resources::{Registry, ResourceInfo};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{ObjKey, Store};

/// Everything behind the lock.
#[derive(Debug)]
pub struct State {
    /// Objects and the event log.
    pub store: Store,
    /// Served resources.
    pub registry: Registry,
    /// Seeded randomness for uids, names and IPs.
    pub rng: fastrand::Rng,
    /// Next Service clusterIP (10.96.x.y).
    pub next_cluster_ip: u32,
    /// ServiceAccount tokens issued by TokenRequest: token → (namespace, name, uid) (`authn`).
    pub tokens: std::collections::HashMap<String, (String, String, String)>,
}

/// Who is asking for what, for one request.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The resource.
    pub info: ResourceInfo,
    /// Requested API version.
    pub version: String,
    /// Namespace from the URL.
    pub namespace: Option<String>,
    /// Field manager for managedFields.
    pub manager: String,
    /// `dryRun=All`: validate and answer, but store nothing.
    pub dry_run: bool,
    /// `force=true` for apply.
    pub force: bool,
    /// `fieldValidation=Strict`: unknown fields in custom resources are an error.
    pub strict: bool,
}

impl Ctx {
    /// A context with defaults.
    pub fn new(info: ResourceInfo, version: &str, namespace: Option<&str>, manager: &str) -> Self {
        Self {
            info,
            version: version.into(),
            namespace: namespace.map(String::from),
            manager: manager.into(),
            dry_run: false,
            force: false,
            strict: false,
        }
    }

    pub(crate) fn ns(&self) -> &str {
        if self.info.namespaced {
            self.namespace.as_deref().unwrap_or("")
        } else {
            ""
        }
    }

    /// Store key of `name` in this context.
    pub fn key(&self, name: &str) -> ObjKey {
        let (group, plural) = self.storage();
        ObjKey::new(group, plural, self.ns(), name)
    }

    /// (group, plural) the objects are stored under.
    pub fn storage(&self) -> (&str, &str) {
        match &self.info.storage {
            Some((g, p, _)) => (g, p),
            None => (&self.info.group, &self.info.plural),
        }
    }

    /// `group/version` as requested.
    pub fn api_version(&self) -> String {
        self.info.api_version(&self.version)
    }

    pub(crate) fn scope(&self, status: bool) -> Scope {
        if status {
            Scope::Status
        } else {
            Scope::Main {
                exclude_status: self.info.status,
            }
        }
    }
}

/// List options from the query string.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `limit` (0 = unlimited).
    pub limit: usize,
    /// `continue` token.
    pub continue_token: Option<String>,
}

/// The field manager the controller-manager writes with (it may set status on create).
pub const CONTROLLER_MANAGER: &str = "devcluster-controller-manager";

/// Which part of the object a write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The main resource (status preserved when it is a subresource).
    Main,
    /// `/status` (everything but status preserved).
    Status,
}

/// How managedFields are maintained for a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Managed {
    /// An ordinary write by `ctx.manager`.
    Update,
    /// Server-side apply already computed them.
    Preserve,
}
