//! Benchmark of the fake API server (not a test): start-up time, server-side applies per
//! second with 1 and 8 concurrent clients, watch delivery latency, and memory for 10,000
//! objects. Run with `cargo bench -p stash-testkit --bench fakeapi`; prints a table.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use stash_testkit::apiserver::WriteOptions;
use stash_testkit::FakeApiServer;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn startup() -> (Duration, Duration) {
    let mut in_process = Vec::new();
    let mut tcp = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let s = FakeApiServer::start().await.expect("start");
        in_process.push(t.elapsed());
        drop(s);
        let t = Instant::now();
        let s = FakeApiServer::builder()
            .tcp(0)
            .start()
            .await
            .expect("start tcp");
        tcp.push(t.elapsed());
        drop(s);
    }
    (median(in_process), median(tcp))
}

async fn applies_per_second(clients: usize, window: Duration) -> f64 {
    let server = FakeApiServer::start().await.expect("start");
    let mut tasks = Vec::new();
    let deadline = Instant::now() + window;
    for c in 0..clients {
        let client = Client::new(server.router(), "default");
        tasks.push(tokio::spawn(async move {
            let cms: Api<ConfigMap> = Api::default_namespaced(client);
            let pp = PatchParams::apply(&format!("bench-{c}")).force();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let name = format!("c{c}-{}", n % 100);
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                                  "data": {"n": n.to_string(), "client": c.to_string()}});
                cms.patch(&name, &pp, &Patch::Apply(&body)).await.expect("apply");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    total as f64 / window.as_secs_f64()
}

async fn watch_latency() -> Duration {
    let server = FakeApiServer::start().await.expect("start");
    let client = Client::new(server.router(), "default");
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let mut events = watcher(cms.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    let first: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "warmup"}})).expect("cm");
    cms.create(&PostParams::default(), &first)
        .await
        .expect("create");
    let _ = events.next().await;
    let mut samples = Vec::new();
    for i in 0..200 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("w{i}")}})).expect("cm");
        let t = Instant::now();
        cms.create(&PostParams::default(), &cm)
            .await
            .expect("create");
        loop {
            let ev = events.next().await.expect("stream").expect("event");
            if ev.metadata.name.as_deref() == Some(&format!("w{i}")) {
                break;
            }
        }
        samples.push(t.elapsed());
    }
    median(samples)
}

async fn memory_for(objects: usize) -> (f64, Duration) {
    let before = rss_kib();
    let server = FakeApiServer::start().await.expect("start");
    let api = server.api();
    let info = api.resource("", "v1", "configmaps").expect("configmaps");
    let opts = WriteOptions::manager("bench");
    let t = Instant::now();
    for i in 0..objects {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("obj-{i}"), "labels": {"app": "bench", "index": i.to_string()}},
            "data": {"config.yaml": "key: value\nother: 12345\n", "mode": "backup"}});
        api.create(&info, "default", body, &opts).expect("create");
    }
    let took = t.elapsed();
    let after = rss_kib();
    let mib = after.saturating_sub(before) as f64 / 1024.0;
    drop(server);
    (mib, took)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (in_process, tcp) = startup().await;
        let one = applies_per_second(1, Duration::from_secs(3)).await;
        let eight = applies_per_second(8, Duration::from_secs(3)).await;
        let latency = watch_latency().await;
        let (mib, took) = memory_for(10_000).await;
        println!("| measure | value | budget |");
        println!("|---|---|---|");
        println!(
            "| start-up, in process (median of 21) | {:.2} ms | < 20 ms |",
            in_process.as_secs_f64() * 1e3
        );
        println!(
            "| start-up, TCP + kubeconfig (median of 21) | {:.2} ms | < 20 ms |",
            tcp.as_secs_f64() * 1e3
        );
        println!(
            "| server-side applies/s, 1 client (kube::Client, in process) | {one:.0} | >= 5000 |"
        );
        println!("| server-side applies/s, 8 clients | {eight:.0} | >= 5000 |");
        println!(
            "| watch delivery latency, create -> watcher event (median of 200) | {:.3} ms | |",
            latency.as_secs_f64() * 1e3
        );
        println!("| RSS growth for 10,000 ConfigMaps | {mib:.1} MiB | < 100 MiB |");
        println!(
            "| time to create 10,000 ConfigMaps (direct API) | {:.0} ms | |",
            took.as_secs_f64() * 1e3
        );
    });
}
