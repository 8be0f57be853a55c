//! Stash-shaped YAML deserializes into our types and serializes back without losing a field.

use serde_json::Value;
use stash_core::api::{
    AppBinding, BackupConfiguration, BackupSession, Function, Repository, RestoreSession, Task,
};
use std::path::Path;

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Value {
    let typed: T = serde_json::from_value(v.clone()).expect("deserializes");
    serde_json::to_value(&typed).expect("serializes")
}

#[test]
fn fixture_objects_survive_a_round_trip() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    let mut checked = 0;
    for dir in std::fs::read_dir(&root).expect("fixtures/") {
        let file = dir.expect("entry").path().join("objects.yaml");
        if !file.exists() {
            // fixtures/invalid: the bad-input corpus, wrong on purpose.
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("readable");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).expect("yaml");
            let back = match v["kind"].as_str().unwrap_or_default() {
                "Repository" => round_trip::<Repository>(&v),
                "BackupConfiguration" => round_trip::<BackupConfiguration>(&v),
                "BackupSession" => round_trip::<BackupSession>(&v),
                "RestoreSession" => round_trip::<RestoreSession>(&v),
                "Task" => round_trip::<Task>(&v),
                "Function" => round_trip::<Function>(&v),
                "AppBinding" => round_trip::<AppBinding>(&v),
                _ => continue,
            };
            assert_eq!(back, v, "{} in {}", v["metadata"]["name"], file.display());
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} objects checked");
}

/// The MySQL example of Stash's documentation, with every optional field of the kinds set.
#[test]
fn documented_stash_yaml_round_trips() {
    let docs = r#"
apiVersion: stash.appscode.com/v1alpha1
kind: Repository
metadata: {name: gcs-repo, namespace: demo}
spec:
  backend:
    storageSecretName: gcs-secret
    gcs: {bucket: stash-testing, prefix: /demo/mysql/sample-mysql, maxConnections: 2}
  wipeOut: false
  usagePolicy:
    allowedNamespaces:
      from: Selector
      selector: {matchLabels: {kubernetes.io/metadata.name: demo}}
status:
  observedGeneration: 3
  lastBackupTime: "2026-11-27T14:00:00Z"
  integrity: true
  totalSize: 6.815 MiB
  snapshotCount: 5
  snapshotsRemovedOnLastCleanup: 1
  references: [{kind: BackupConfiguration, namespace: demo, name: sample-mysql-backup}]
---
apiVersion: stash.appscode.com/v1beta1
kind: BackupConfiguration
metadata: {name: sample-mysql-backup, namespace: demo}
spec:
  schedule: "*/5 * * * *"
  driver: Restic
  task: {name: mysql-backup-8.0.21, params: [{name: args, value: "--all-databases --single-transaction"}]}
  repository: {name: gcs-repo, namespace: demo}
  target:
    ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: sample-mysql, namespace: demo}
    alias: primary
  retentionPolicy: {name: keep-last-5, keepLast: 5, keepHourly: 1, keepDaily: 2, keepWeekly: 3, keepMonthly: 4, keepYearly: 5, keepTags: [a], prune: true, dryRun: false}
  runtimeSettings:
    pod: {serviceAccountName: custom, nodeSelector: {a: b}, priorityClassName: high, imagePullSecrets: [{name: regcred}]}
    container:
      resources: {limits: {memory: 256Mi}}
      nice: {adjustment: 5}
      ionice: {class: 2, classData: 4}
  tempDir: {medium: Memory, sizeLimit: 2Gi, disableCaching: true}
  interimVolumeTemplate:
    metadata: {name: interim}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
  hooks:
    preBackup: {exec: {command: [sh, -c, "echo pre"]}, containerName: mysql}
    postBackup: {tcpSocket: {port: 3306}, executionPolicy: OnFailure}
  paused: false
  backupHistoryLimit: 3
  timeOut: 2h
  retryConfig: {maxRetry: 2, delay: 5m}
status:
  observedGeneration: 1
  phase: Ready
  conditions:
  - {type: RepositoryFound, status: "True", reason: RepositoryAvailable, message: Repository demo/gcs-repo exist., lastTransitionTime: "2026-11-27T14:00:00Z", observedGeneration: 1}
---
apiVersion: stash.appscode.com/v1beta1
kind: RestoreSession
metadata: {name: sample-mysql-restore, namespace: demo}
spec:
  task: {name: mysql-restore-8.0.21, params: [{name: args, value: ""}]}
  repository: {name: gcs-repo}
  target:
    ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: restored-mysql}
    alias: primary
    rules: [{targetHosts: [primary], sourceHost: host-0, snapshots: [latest]}]
  hooks:
    postRestore: {httpPost: {path: /x, port: 80, body: "{{ .Status.Phase }}", form: [{key: k, values: [v]}]}, executionPolicy: Always}
  timeOut: 1h
status:
  phase: Succeeded
  totalHosts: 1
  sessionDuration: 59s
  stats: [{hostname: primary, phase: Succeeded, duration: 3.2s}]
---
apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {name: sample-mysql, namespace: demo}
spec:
  type: kubedb.com/mysql
  version: "8.0.21"
  clientConfig:
    service: {scheme: mysql, name: sample-mysql, port: 3306, path: /}
    caBundle: LS0tLS1CRUdJTg==
  secret: {name: sample-mysql-auth}
  secretTransforms: [{renameKey: {from: USER, to: username}}, {addKey: {key: k, stringValue: v}}, {addKeysFrom: {secretRef: {name: other}}}, {removeKey: {key: x}}]
  parameters:
    apiVersion: appcatalog.appscode.com/v1alpha1
    kind: StashAddon
    stash: {addon: {backupTask: {name: mysql-backup-8.0.21}, restoreTask: {name: mysql-restore-8.0.21}}}
    custom: {anything: [1, 2]}
"#;
    for doc in serde_yaml::Deserializer::from_str(docs) {
        let v: Value = serde::Deserialize::deserialize(doc).expect("yaml");
        let back = match v["kind"].as_str().unwrap_or_default() {
            "Repository" => round_trip::<Repository>(&v),
            "BackupConfiguration" => round_trip::<BackupConfiguration>(&v),
            "RestoreSession" => round_trip::<RestoreSession>(&v),
            "AppBinding" => round_trip::<AppBinding>(&v),
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(back, v);
    }
}
