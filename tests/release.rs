//! The release pieces agree with each other: the krew manifest installs the archive the release
//! workflow builds, under the binary name this workspace builds, and the image the chart pulls is
//! the one the workflow publishes. A rename in one place fails here, not on a user's machine.

use regex::Regex;
use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML")
}

/// `.krew.yaml` as krew-release-bot renders it for tag v9.9.9.
fn krew_rendered() -> Value {
    let template = read(".krew.yaml");
    let uri_and_sha = Regex::new(r#"\{\{\s*addURIAndSha "([^"]+)" \.TagName\s*\}\}"#).unwrap();
    let rendered = uri_and_sha.replace_all(&template, |c: &regex::Captures| {
        format!("uri: {}\n      sha256: {}", &c[1], "0".repeat(64))
    });
    yaml(&rendered.replace("{{ .TagName }}", "v9.9.9"))
}

#[test]
fn krew_manifest_installs_the_archives_the_release_builds() {
    let krew = krew_rendered();
    assert_eq!(krew["kind"], "Plugin");
    assert_eq!(krew["metadata"]["name"], "failover");
    assert_eq!(krew["spec"]["version"], "v9.9.9");
    let workflow = yaml(&read(".github/workflows/release.yml"));
    let binaries = &workflow["jobs"]["binaries"];
    let arches: Vec<&str> = binaries["strategy"]["matrix"]["include"]
        .as_array()
        .expect("matrix")
        .iter()
        .map(|m| m["arch"].as_str().expect("arch"))
        .collect();
    let steps = binaries["steps"].as_array().expect("steps");
    let script = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["run"].as_str())
            .unwrap_or_else(|| panic!("no step {name}"))
            .to_string()
    };
    assert!(script("build (static musl binaries)").contains("--bin kubectl-failover"));
    assert!(script("package").contains(r#"dist/${bin}_${TAG}_linux_${ARCH}.tar.gz"#));
    let platforms = krew["spec"]["platforms"].as_array().expect("platforms");
    assert_eq!(
        platforms.len(),
        arches.len(),
        "one krew platform per built arch"
    );
    for p in platforms {
        let arch = p["selector"]["matchLabels"]["arch"].as_str().unwrap();
        assert!(
            arches.contains(&arch),
            "krew offers {arch}, the release does not build it"
        );
        assert_eq!(p["selector"]["matchLabels"]["os"], "linux");
        let uri = p["uri"].as_str().unwrap();
        assert!(
            uri.ends_with(&format!(
                "/v9.9.9/kubectl-failover_v9.9.9_linux_{arch}.tar.gz"
            )),
            "{uri}"
        );
        assert_eq!(p["bin"], "kubectl-failover");
    }
    // The binary the archive carries is built here.
    assert!(std::path::Path::new(env!("CARGO_BIN_EXE_kubectl-failover")).exists());
}

#[test]
fn the_chart_pulls_the_image_the_release_publishes() {
    let chart = yaml(&read("charts/ingress-failover/Chart.yaml"));
    let values = yaml(&read("charts/ingress-failover/values.yaml"));
    let workflow = yaml(&read(".github/workflows/release.yml"));
    let image = &workflow["jobs"]["image"]["steps"];
    let meta = image
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "meta")
        .expect("metadata step");
    // ghcr.io/${{ github.repository }} for the repository ingress-failover/ingress-failover.
    assert_eq!(meta["with"]["images"], "ghcr.io/${{ github.repository }}");
    assert_eq!(
        values["image"]["repository"],
        "ghcr.io/ingress-failover/ingress-failover"
    );
    // Tag v<version> publishes :<version>, the chart's appVersion, which is the crate's version.
    assert_eq!(meta["with"]["tags"], "type=semver,pattern={{version}}");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    let push = image
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "push")
        .expect("build-push step");
    assert_eq!(push["with"]["platforms"], "linux/amd64,linux/arm64");
    assert_eq!(push["with"]["provenance"], "mode=max");
}
