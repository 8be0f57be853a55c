//! The install manifests: the CRDs in `deploy/` are exactly what `stash crds` prints, kustomize
//! renders the whole install, and the operator gets no cluster-wide read of Secrets.

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn deploy_crds_match_stash_crds() {
    let generated = stash_operator::commands::crds::crds_yaml().expect("crds render");
    let committed =
        std::fs::read_to_string(repo().join("deploy/crds.yaml")).expect("deploy/crds.yaml");
    assert!(
        generated == committed,
        "deploy/crds.yaml is stale: regenerate it with `cargo run -p stash-operator --bin stash -- crds > deploy/crds.yaml`"
    );
}

#[test]
fn kustomize_renders_a_least_privilege_install() {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join("deploy"))
        .output()
        .expect("kubectl on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for k in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    // Every ClusterRole that a ClusterRoleBinding grants must not read Secrets.
    let bound: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding")
        .filter_map(|d| d["roleRef"]["name"].as_str())
        .collect();
    for role in docs.iter().filter(|d| d["kind"] == "ClusterRole") {
        let name = role["metadata"]["name"].as_str().unwrap_or_default();
        if !bound.contains(&name) {
            continue;
        }
        for rule in role["rules"].as_sequence().into_iter().flatten() {
            let resources: Vec<&str> = rule["resources"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str())
                .collect();
            assert!(
                !resources.contains(&"secrets"),
                "cluster-wide Secret access in {name}"
            );
        }
    }
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["limits"]["memory"].is_string());
}
