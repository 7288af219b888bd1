//! The resource registry: which group/version/resource the plane serves, and how.
//!
//! Built-in resources are a static table; CustomResourceDefinitions add entries at runtime, which is
//! what makes a freshly created CRD appear in discovery and become servable.

use serde_json::Value;
use std::collections::BTreeMap;

/// Where `/scale` reads and writes replica counts (JSON paths like `.spec.replicas`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    /// Path of the desired replica count.
    pub spec_replicas: String,
    /// Path of the observed replica count.
    pub status_replicas: String,
    /// Path of a string label selector in status (CRDs); `None` means "derive from
    /// `.spec.selector`" (Deployments).
    pub label_selector: Option<String>,
}

/// A column of `kubectl get` output (a CRD `additionalPrinterColumn` or a built-in one).
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    /// Header.
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean, date.
    pub type_: String,
    /// JSONPath into the object, or `@name` for a computed built-in cell (see `table.rs`).
    pub json_path: String,
    /// Description shown by `kubectl get -o wide` help.
    pub description: String,
    /// 0 = always shown; >0 only with `-o wide`.
    pub priority: i64,
}

/// Everything the plane needs to know to serve one resource.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: String,
    /// Served versions; the first one is the preferred/storage version.
    pub versions: Vec<String>,
    /// Plural resource name (URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// `kubectl` short names.
    pub short_names: Vec<String>,
    /// Categories (`kubectl get all`).
    pub categories: Vec<String>,
    /// Has a `/status` subresource (status isolated from the main resource).
    pub status: bool,
    /// Has a `/scale` subresource.
    pub scale: Option<ScalePaths>,
    /// Printer columns (without Name, which is always first).
    pub columns: Vec<PrinterColumn>,
    /// openAPIV3Schema per version (CRDs only).
    pub schemas: BTreeMap<String, Value>,
    /// Defined by a CRD (so objects carry apiVersion/kind and get schema validation).
    pub from_crd: bool,
    /// Stored as another resource: (group, plural, apiVersion) of the storage form
    /// (events.k8s.io Events are core Events, see `convert.rs`).
    pub storage: Option<(String, String, String)>,
}

impl ResourceInfo {
    /// `group/version` or just `version` for the core group.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// Does this resource serve `version`?
    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }
}

fn col(name: &str, type_: &str, json_path: &str, priority: i64) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        json_path: json_path.into(),
        description: String::new(),
        priority,
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
    scale: bool,
    columns: Vec<PrinterColumn>,
}

fn builtins() -> Vec<Builtin> {
    let b = |group, version, plural, kind, namespaced, short, status, scale| Builtin {
        group,
        version,
        plural,
        kind,
        namespaced,
        short,
        status,
        scale,
        columns: Vec::new(),
    };
    let mut list = vec![
        Builtin {
            columns: vec![col("Status", "string", ".status.phase", 0)],
            ..b(
                "",
                "v1",
                "namespaces",
                "Namespace",
                false,
                &["ns"],
                true,
                false,
            )
        },
        Builtin {
            columns: vec![
                col("Type", "string", ".spec.type", 0),
                col("Cluster-IP", "string", ".spec.clusterIP", 0),
                col("Ports", "string", "@service-ports", 0),
                col("Selector", "string", "@service-selector", 1),
            ],
            ..b("", "v1", "services", "Service", true, &["svc"], true, false)
        },
        Builtin {
            columns: vec![
                col("Ready", "string", "@pod-ready", 0),
                col("Status", "string", ".status.phase", 0),
                col("IP", "string", ".status.podIP", 1),
            ],
            ..b("", "v1", "pods", "Pod", true, &["po"], true, false)
        },
        Builtin {
            columns: vec![
                col("Type", "string", ".type", 0),
                col("Reason", "string", ".reason", 0),
                col("Object", "string", "@event-object", 0),
                col("Message", "string", ".message", 0),
            ],
            ..b("", "v1", "events", "Event", true, &["ev"], false, false)
        },
        b(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            &["cm"],
            false,
            false,
        ),
        b(
            "",
            "v1",
            "endpoints",
            "Endpoints",
            true,
            &["ep"],
            false,
            false,
        ),
        Builtin {
            columns: vec![
                col("Ready", "string", "@deployment-ready", 0),
                col("Up-to-date", "integer", ".status.updatedReplicas", 0),
                col("Available", "integer", ".status.availableReplicas", 0),
            ],
            ..b(
                "apps",
                "v1",
                "deployments",
                "Deployment",
                true,
                &["deploy"],
                true,
                true,
            )
        },
        b(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            true,
            &["rs"],
            true,
            true,
        ),
        Builtin {
            columns: vec![
                col("AddressType", "string", ".addressType", 0),
                col("Ports", "string", "@slice-ports", 0),
                col("Endpoints", "string", "@slice-endpoints", 0),
            ],
            ..b(
                "discovery.k8s.io",
                "v1",
                "endpointslices",
                "EndpointSlice",
                true,
                &[],
                false,
                false,
            )
        },
        Builtin {
            columns: vec![
                col("Class", "string", ".spec.ingressClassName", 0),
                col("Hosts", "string", "@ingress-hosts", 0),
            ],
            ..b(
                "networking.k8s.io",
                "v1",
                "ingresses",
                "Ingress",
                true,
                &["ing"],
                true,
                false,
            )
        },
        Builtin {
            columns: vec![col("Controller", "string", ".spec.controller", 0)],
            ..b(
                "networking.k8s.io",
                "v1",
                "ingressclasses",
                "IngressClass",
                false,
                &[],
                false,
                false,
            )
        },
        Builtin {
            columns: vec![col("Holder", "string", ".spec.holderIdentity", 0)],
            ..b(
                "coordination.k8s.io",
                "v1",
                "leases",
                "Lease",
                true,
                &[],
                false,
                false,
            )
        },
        // Stored and served only (no autoscaling happens): the operator reads them to leave an
        // autoscaled emergency Deployment to its autoscaler.
        b(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
            &["hpa"],
            true,
            false,
        ),
        b(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            &["ev"],
            false,
            false,
        ),
        // Stored and served only, for the TokenRequests, TokenReviews and SubjectAccessReviews of
        // `authn` (the plane itself authorizes nothing).
        b(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
            false,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            false,
            false,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
            false,
        ),
        Builtin {
            columns: vec![col("Group", "string", ".spec.group", 1)],
            ..b(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                &["crd", "crds"],
                true,
                false,
            )
        },
    ];
    for entry in &mut list {
        entry
            .columns
            .push(col("Age", "date", ".metadata.creationTimestamp", 0));
    }
    list
}

/// Key of a resource in the registry: (group, plural).
pub type ResourceKey = (String, String);

/// All resources currently served.
#[derive(Debug, Clone)]
pub struct Registry {
    resources: BTreeMap<ResourceKey, ResourceInfo>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut resources = BTreeMap::new();
        for b in builtins() {
            let info = ResourceInfo {
                group: b.group.into(),
                versions: vec![b.version.into()],
                plural: b.plural.into(),
                singular: b.kind.to_lowercase(),
                kind: b.kind.into(),
                namespaced: b.namespaced,
                short_names: b.short.iter().map(|s| s.to_string()).collect(),
                categories: if matches!(b.plural, "services" | "pods" | "deployments") {
                    vec!["all".into()]
                } else {
                    vec![]
                },
                status: b.status,
                scale: b.scale.then(|| ScalePaths {
                    spec_replicas: ".spec.replicas".into(),
                    status_replicas: ".status.replicas".into(),
                    label_selector: None,
                }),
                columns: b.columns,
                schemas: BTreeMap::new(),
                from_crd: false,
                storage: (b.group == "events.k8s.io")
                    .then(|| (String::new(), "events".to_string(), "v1".to_string())),
            };
            resources.insert((info.group.clone(), info.plural.clone()), info);
        }
        Self { resources }
    }
}

impl Registry {
    /// Looks up a resource served at `group/version`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .get(&(group.to_string(), plural.to_string()))
            .filter(|r| r.serves(version))
    }

    /// Looks up by group and plural, regardless of version.
    pub fn get(&self, group: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources.get(&(group.to_string(), plural.to_string()))
    }

    /// Every served resource.
    pub fn all(&self) -> impl Iterator<Item = &ResourceInfo> {
        self.resources.values()
    }

    /// Served groups with their versions (core group excluded), sorted.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.resources.values().filter(|r| !r.group.is_empty()) {
            let versions = groups.entry(r.group.clone()).or_default();
            for v in &r.versions {
                if !versions.contains(v) {
                    versions.push(v.clone());
                }
            }
        }
        groups
    }

    /// Adds or replaces a resource (CRD establishment).
    pub fn insert(&mut self, info: ResourceInfo) {
        self.resources
            .insert((info.group.clone(), info.plural.clone()), info);
    }

    /// Removes a CRD-defined resource.
    pub fn remove(&mut self, group: &str, plural: &str) {
        self.resources
            .remove(&(group.to_string(), plural.to_string()));
    }
}
