//! Installing vendored upstream CRDs (`tests/data/crds`) into a plane and waiting until they
//! serve, the same way for every suite (Gateway API, ExternalDNS's DNSEndpoint).

use std::path::Path;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Client, ResourceExt};

/// Applies the CRD in the YAML file `path` as field manager `manager` (forced: the test owns
/// it) and waits up to 30 s for it to be Established and its resource served (a real apiserver
/// may need a moment more). Panics with the file's name on failure.
pub async fn install(client: &Client, path: &Path, manager: &str) -> CustomResourceDefinition {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let name = crd.name_any();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|e| panic!("{path:?} applies: {e}"));
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(
            crds,
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} not Established within 30 s"))
    .unwrap_or_else(|e| panic!("watching {name}: {e}"));
    let version = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .unwrap_or_else(|| panic!("{name} has no storage version"));
    let ar = ApiResource {
        group: crd.spec.group.clone(),
        version: version.name.clone(),
        api_version: format!("{}/{}", crd.spec.group, version.name),
        kind: crd.spec.names.kind.clone(),
        plural: crd.spec.names.plural.clone(),
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    crate::wait::eventually(Duration::from_secs(30), || async {
        api.list(&ListParams::default().limit(1)).await.ok()
    })
    .await;
    crd
}
