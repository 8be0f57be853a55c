# Writes fixtures/invalid/<case>.yaml: one bad input per file, on top of an otherwise valid set
# of objects. The first line names the field the error or condition must name.
# Run it (python3 + PyYAML), then review: INSTA_UPDATE=always cargo test -p stash-core --test invalid_inputs
import copy, os, yaml, glob
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "invalid")
NS = "demo"

def secret(name, keys):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
            "type": "Opaque", "stringData": {k: f"<{k.lower()}>" for k in keys}}
BASE = {
    "secret": secret("s3-secret", ["RESTIC_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]),
    "db-secret": secret("sample-mysql-auth", ["username", "password"]),
    "repo": {"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
             "metadata": {"name": "s3-repo", "namespace": NS},
             "spec": {"backend": {"storageSecretName": "s3-secret",
                                  "s3": {"endpoint": "http://minio.demo.svc:9000", "bucket": "stash-backup", "prefix": "/demo/mysql"}}}},
    "appbinding": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
                   "metadata": {"name": "sample-mysql", "namespace": NS},
                   "spec": {"type": "kubedb.com/mysql", "version": "8.0.21",
                            "clientConfig": {"service": {"name": "sample-mysql", "port": 3306, "scheme": "mysql"}},
                            "secret": {"name": "sample-mysql-auth"}}},
    "bc": {"apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration",
           "metadata": {"name": "sample-mysql-backup", "namespace": NS, "generation": 1},
           "spec": {"schedule": "*/5 * * * *", "task": {"name": "mysql-backup-8.0.21"},
                    "repository": {"name": "s3-repo"},
                    "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "sample-mysql"}},
                    "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True}}},
}
RESTORE = {"apiVersion": "stash.appscode.com/v1beta1", "kind": "RestoreSession",
           "metadata": {"name": "sample-mysql-restore", "namespace": NS},
           "spec": {"task": {"name": "mysql-restore-8.0.21"}, "repository": {"name": "s3-repo"},
                    "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "sample-mysql"},
                               "rules": [{"snapshots": ["latest"]}]}}}

def setpath(obj, path, value):
    keys = path.split(".")
    for k in keys[:-1]:
        obj = obj.setdefault(k, {})
    if value is DELETE: obj.pop(keys[-1], None)
    else: obj[keys[-1]] = value
DELETE = object()

cases = {}
def case(name, field, edits=(), extra=(), drop=(), restore=None, raw=None):
    """edits: (object key, path, value); extra: more objects; drop: base objects to leave out."""
    objs = copy.deepcopy(BASE)
    for key, path, value in edits:
        setpath(objs[key], path, value)
    docs = [o for k, o in objs.items() if k not in drop] + list(extra)
    if restore is not None:
        r = copy.deepcopy(RESTORE)
        for path, value in restore:
            setpath(r, path, value)
        docs.append(r)
    cases[name] = (field, raw if raw is not None else yaml.safe_dump_all(docs, sort_keys=False))

# Cron strings.
case("cron-minute-out-of-range", "spec.schedule", [("bc", "spec.schedule", "61 * * * *")])
case("cron-too-few-fields", "spec.schedule", [("bc", "spec.schedule", "* * *")])
case("cron-zero-step", "spec.schedule", [("bc", "spec.schedule", "*/0 * * * *")])
case("cron-open-range", "spec.schedule", [("bc", "spec.schedule", "5 4 * * MON-")])
case("cron-unknown-month-name", "spec.schedule", [("bc", "spec.schedule", "0 0 1 Foo *")])
case("cron-empty", "spec.schedule", [("bc", "spec.schedule", "")])
case("cron-integer", "spec.schedule", [("bc", "spec.schedule", 12)])
# Missing or empty required fields.
case("bc-no-repository", "spec.repository", [("bc", "spec.repository", DELETE)])
case("bc-empty-repository-name", "spec.repository.name", [("bc", "spec.repository.name", "")])
case("bc-no-target", "spec.target.ref", [("bc", "spec.target", DELETE)])
case("bc-empty-target-name", "spec.target.ref.name", [("bc", "spec.target.ref.name", "")])
case("bc-no-retention", "spec.retentionPolicy", [("bc", "spec.retentionPolicy", DELETE)])
case("bc-retention-without-name", "spec.retentionPolicy.name", [("bc", "spec.retentionPolicy.name", "")])
case("repository-no-backend", "spec.backend", [("repo", "spec.backend", {"storageSecretName": "s3-secret"})])
case("repository-s3-without-bucket", "spec.backend.s3.bucket", [("repo", "spec.backend.s3.bucket", DELETE)])
case("repository-local-without-mount-path", "spec.backend.local.mountPath",
     [("repo", "spec.backend", {"storageSecretName": "s3-secret", "local": {"hostPath": {"path": "/data/stash"}}})])
case("restore-no-repository", "spec.repository", restore=[("spec.repository", DELETE)])
case("restore-no-target", "spec.target", restore=[("spec.target", DELETE)])
# Wrong types.
case("type-keep-last-string", "spec.retentionPolicy.keepLast", [("bc", "spec.retentionPolicy.keepLast", "five")])
case("type-paused-string", "spec.paused", [("bc", "spec.paused", "yes")])
case("type-history-limit-float", "spec.backupHistoryLimit", [("bc", "spec.backupHistoryLimit", 1.5)])
case("type-spec-sequence", "spec", [("bc", "spec", ["schedule"])])
case("type-target-name-mapping", "spec.target.ref.name", [("bc", "spec.target.ref.name", {"a": "b"})])
# Backends.
case("backend-two-at-once", "spec.backend",
     [("repo", "spec.backend.gcs", {"bucket": "b", "prefix": "p"})])
case("backend-unknown", "spec.backend.ftp",
     [("repo", "spec.backend", {"storageSecretName": "s3-secret", "ftp": {"host": "x"}})])
# Names and references.
case("name-254-characters", "metadata.name", [("bc", "metadata.name", "b" * 254)])
case("name-uppercase", "metadata.name", [("bc", "metadata.name", "Sample-MySQL-Backup")])
case("cross-namespace-refused-by-usage-policy", "spec.usagePolicy",
     [("repo", "metadata.namespace", "backups"), ("secret", "metadata.namespace", "backups"),
      ("bc", "spec.repository.namespace", "backups")])
case("cross-namespace-selector-does-not-match", "spec.usagePolicy",
     [("repo", "metadata.namespace", "backups"), ("secret", "metadata.namespace", "backups"),
      ("repo", "spec.usagePolicy", {"allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "db"}}}}),
      ("bc", "spec.repository.namespace", "backups")],
     extra=[{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"team": "web"}}}])
# Secret keys.
case("secret-without-restic-password", "RESTIC_PASSWORD",
     [("secret", "stringData", {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})])
case("secret-b2-without-account-key", "B2_ACCOUNT_KEY",
     [("secret", "stringData", {"RESTIC_PASSWORD": "p", "B2_ACCOUNT_ID": "a"}),
      ("repo", "spec.backend", {"storageSecretName": "s3-secret", "b2": {"bucket": "b", "prefix": "p"}})])
# Stash's own wording for a missing Secret names the Secret, not the field that points at it.
case("secret-missing", "Backend Secret demo/s3-secret", drop=["secret"])
# Unknown things by name.
case("restore-snapshot-id-malformed", "spec.target.rules[0].snapshots", restore=[("spec.target.rules", [{"snapshots": ["not-a-snapshot!"]}])])
case("unknown-task", "spec.task.name", [("bc", "spec.task.name", "mysql-backup-9.9.9")])
case("restore-unknown-task", "spec.task.name", restore=[("spec.task.name", "mysql-restore-0.0.1")])
# Retention numbers and rules.
case("retention-negative", "spec.retentionPolicy.keepLast", [("bc", "spec.retentionPolicy.keepLast", -1)])
case("retention-negative-daily", "spec.retentionPolicy.keepDaily", [("bc", "spec.retentionPolicy.keepDaily", -3)])
# Larger than any integer the API server stores (int64).
case("retention-huge", "spec.retentionPolicy.keepLast", [("bc", "spec.retentionPolicy.keepLast", 10**20)])
case("retention-huge-hourly", "spec.retentionPolicy.keepHourly", [("bc", "spec.retentionPolicy.keepHourly", -(10**20))])
# Durations and retries.
case("duration-malformed", "spec.timeOut", [("bc", "spec.timeOut", "5 minutes")])
case("duration-negative", "spec.timeOut", [("bc", "spec.timeOut", "-5m")])
case("retry-delay-malformed", "spec.retryConfig.delay", [("bc", "spec.retryConfig", {"maxRetry": 2, "delay": "soon"})])
case("retry-negative", "spec.retryConfig.maxRetry", [("bc", "spec.retryConfig", {"maxRetry": -1, "delay": "1m"})])
case("history-limit-negative", "spec.backupHistoryLimit", [("bc", "spec.backupHistoryLimit", -3)])
# Other fields with a closed set of values.
case("hook-policy-unknown", "spec.hooks.postBackup.executionPolicy",
     [("bc", "spec.hooks", {"postBackup": {"httpGet": {"port": 80, "path": "/"}, "executionPolicy": "Sometimes"}})])
case("pre-hook-policy-unknown", "spec.hooks.preBackup.executionPolicy",
     [("bc", "spec.hooks", {"preBackup": {"httpGet": {"port": 80, "path": "/"}, "executionPolicy": "Sometimes"}})])
case("driver-unknown", "spec.driver", [("bc", "spec.driver", "Kopia")])
case("target-kind-unsupported", "spec.target.ref.kind", [("bc", "spec.target.ref.kind", "Deployment")])
case("restore-snapshots-and-paths", "spec.target.rules[0]",
     restore=[("spec.target.rules", [{"snapshots": ["latest"], "paths": ["/dumpfile.sql"]}])])
case("restore-two-snapshots", "spec.target.rules[0].snapshots",
     restore=[("spec.target.rules", [{"snapshots": ["4bc21d6f", "9f8e7d6c"]}])])
case("restore-rules-conflicting", "spec.target.rules",
     restore=[("spec.target.rules", [{"snapshots": ["latest"]}, {"snapshots": ["latest"]}])])
# Typos (a strict API server rejects them).
case("typo-keep-last", "spec.retentionPolicy.keepLst", [("bc", "spec.retentionPolicy.keepLst", 5)])
case("typo-retention-policy", "spec.retentionPolicyy", [("bc", "spec.retentionPolicyy", {"name": "x", "keepLast": 1})])
# Not YAML, or not an object.
case("yaml-syntax-error", "line", raw="apiVersion: v1\nkind: Secret\nmetadata:\n  name: [unclosed\n")
case("document-without-kind", "kind", raw="apiVersion: stash.appscode.com/v1beta1\nmetadata:\n  name: x\n")

for old in glob.glob(os.path.join(root, "*.yaml")):
    os.remove(old)
for name, (field, text) in sorted(cases.items()):
    with open(os.path.join(root, name + ".yaml"), "w") as f:
        f.write(f"# field: {field}\n" + text)
print(len(cases), "cases")
