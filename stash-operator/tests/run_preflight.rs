//! `stash run` against a cluster that is not ready for it: it names what is missing and exits,
//! instead of retrying forever.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use stash_testkit::FakeApiServer;

/// Runs `stash run` with this kubeconfig; fails the test if it has not exited within 60 s.
fn stash_run(kubeconfig: &Path, extra: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stash"))
        .args(["run", "--metrics-addr", "127.0.0.1:0"])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("POD_NAMESPACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stash run");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "stash run did not exit within 60 s: {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_crds_and_a_missing_lease_namespace_are_named() {
    let server = FakeApiServer::builder()
        .tcp(0)
        .start()
        .await
        .expect("server");
    let kubeconfig = server.kubeconfig_path().expect("tcp kubeconfig").to_owned();

    let out = tokio::task::spawn_blocking({
        let kubeconfig = kubeconfig.clone();
        move || stash_run(&kubeconfig, &[])
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for name in [
        "backupconfigurations.stash.appscode.com/v1beta1",
        "repositories.stash.appscode.com/v1alpha1",
        "appbindings.appcatalog.appscode.com/v1alpha1",
    ] {
        assert!(stderr.contains(name), "{name} not named: {stderr}");
    }
    assert!(stderr.contains("stash crds"), "{stderr}");

    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("read kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("config"),
    )
    .expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for crd in stash_core::crd::crds() {
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("install crd");
    }

    let out = tokio::task::spawn_blocking(move || {
        stash_run(&kubeconfig, &["--namespace", "no-such-namespace"])
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("leader-election namespace \"no-such-namespace\" does not exist")
            && stderr.contains("--namespace"),
        "{stderr}"
    );
}
