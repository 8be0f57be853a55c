# Writes fixtures/<case>/objects.yaml, one folder per planner case (python3 + PyYAML).
# Edit the cases here, run it, then review the snapshot changes: INSTA_UPDATE=always cargo test -p stash-core --test fixtures
import copy, os, yaml, shutil, zlib
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
NS = "demo"
T0 = "2026-11-27T14:50:00Z"

def secret(name, keys, ns=NS):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
            "type": "Opaque", "stringData": {k: f"<{k.lower()}>" for k in keys}}

s3_secret = secret("s3-secret", ["RESTIC_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
def repo(backend, name="s3-repo", secret_name="s3-secret", ns=NS, extra=None):
    b = {"storageSecretName": secret_name} if secret_name else {}
    b.update(backend)
    r = {"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
         "metadata": {"name": name, "namespace": ns}, "spec": {"backend": b}}
    if extra: r["spec"].update(extra)
    return r
S3 = {"s3": {"endpoint": "http://minio.demo.svc:9000", "bucket": "stash-backup", "prefix": "/demo/mysql", "region": "us-east-1"}}
appbinding = {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
    "metadata": {"name": "sample-mysql", "namespace": NS, "labels": {"app.kubernetes.io/instance": "sample-mysql", "app.kubernetes.io/managed-by": "kubedb.com", "app.kubernetes.io/name": "mysqls.kubedb.com"}},
    "spec": {"type": "kubedb.com/mysql", "version": "8.0.21",
        "appRef": {"apiGroup": "kubedb.com", "kind": "MySQL", "name": "sample-mysql", "namespace": NS},
        "clientConfig": {"service": {"name": "sample-mysql", "path": "/", "port": 3306, "scheme": "mysql"}, "url": "tcp(sample-mysql.demo.svc:3306)/"},
        "secret": {"name": "sample-mysql-auth"},
        "parameters": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "StashAddon",
            "stash": {"addon": {"backupTask": {"name": "mysql-backup-8.0.21", "params": [{"name": "args", "value": "--all-databases --set-gtid-purged=OFF"}]},
                                "restoreTask": {"name": "mysql-restore-8.0.21"}}}}}}
db_secret = secret("sample-mysql-auth", ["username", "password"])
def bc(**over):
    spec = {"schedule": "*/5 * * * *",
            "task": {"name": "mysql-backup-8.0.21"},
            "repository": {"name": "s3-repo"},
            "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "sample-mysql"}},
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True}}
    meta = {"name": "sample-mysql-backup", "namespace": NS, "uid": "0b1c0c5e-0000-4000-8000-000000000001", "generation": 1, "creationTimestamp": "2026-11-27T10:00:00Z"}
    m = over.pop("metadata", {})
    meta.update(m)
    for k, v in over.items():
        if v is None: spec.pop(k, None)
        else: spec[k] = v
    return {"apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration", "metadata": meta, "spec": spec}
def session(name="sample-mysql-backup-1795791000", created=T0, status=None, bc_name="sample-mysql-backup", retry_left=None, labels=True, invoker_kind="BackupConfiguration"):
    s = {"apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupSession",
         "metadata": {"name": name, "namespace": NS, "uid": f"5e551011-0000-4000-8000-{zlib.crc32(name.encode()):012d}", "creationTimestamp": created},
         "spec": {"invoker": {"apiGroup": "stash.appscode.com", "kind": invoker_kind, "name": bc_name}}}
    if labels:
        s["metadata"]["labels"] = {"stash.appscode.com/invoker-type": invoker_kind, "stash.appscode.com/invoker-name": bc_name}
    if retry_left is not None: s["spec"]["retryLeft"] = retry_left
    if status: s["status"] = status
    return s
def running_status(**extra):
    st = {"phase": "Running", "targets": [{"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "sample-mysql", "namespace": NS},
        "totalHosts": 1, "phase": "Running", "preBackupActions": ["InitializeBackendRepository"],
        "postBackupActions": ["ApplyRetentionPolicy", "VerifyRepositoryIntegrity", "SendRepositoryMetrics"],
        "conditions": [{"type": "BackupExecutorEnsured", "status": "True", "reason": "SuccessfullyEnsuredBackupExecutor", "message": "Backup job stash-backup-sample-mysql-backup-1795791000-0 has been ensured successfully.", "lastTransitionTime": T0}]}]}
    st.update(extra)
    return st
def restore(name="sample-mysql-restore", target=None, **spec_over):
    spec = {"task": {"name": "mysql-restore-8.0.21"}, "repository": {"name": "s3-repo"},
            "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "sample-mysql"}}}
    if target: spec["target"].update(target)
    spec.update(spec_over)
    return {"apiVersion": "stash.appscode.com/v1beta1", "kind": "RestoreSession",
            "metadata": {"name": name, "namespace": NS, "uid": "7e570e00-0000-4000-8000-000000000001", "generation": 1, "creationTimestamp": T0}, "spec": spec}

base = lambda: [s3_secret, repo(S3), appbinding, db_secret]
cases = {}
def case(name, objs, readme):
    cases[name] = (objs, readme)

case("bc-s3", base() + [bc()], "S3 backend, the documented Stash example: Ready, CronJob, RBAC.")
case("bc-gcs", [secret("gcs-secret", ["RESTIC_PASSWORD", "GOOGLE_PROJECT_ID", "GOOGLE_SERVICE_ACCOUNT_JSON_KEY"]), repo({"gcs": {"bucket": "stash-testing", "prefix": "/demo/mysql", "maxConnections": 4}}, name="s3-repo", secret_name="gcs-secret"), appbinding, db_secret, bc(), session()], "GCS backend; the session's Job carries provider gcs and MAX_CONNECTIONS.")
case("bc-azure", [secret("azure-secret", ["RESTIC_PASSWORD", "AZURE_ACCOUNT_NAME", "AZURE_ACCOUNT_KEY"]), repo({"azure": {"container": "stash", "prefix": "/demo"}}, secret_name="azure-secret"), appbinding, db_secret, bc(), session()], "Azure backend.")
case("bc-b2", [secret("b2-secret", ["RESTIC_PASSWORD", "B2_ACCOUNT_ID", "B2_ACCOUNT_KEY"]), repo({"b2": {"bucket": "stash-b2", "prefix": "/demo"}}, secret_name="b2-secret"), appbinding, db_secret, bc(), session()], "B2 backend with its required keys.")
case("bc-swift", [secret("swift-secret", ["RESTIC_PASSWORD", "OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD"]), repo({"swift": {"container": "stash", "prefix": "/demo"}}, secret_name="swift-secret"), appbinding, db_secret, bc(), session()], "Swift backend.")
case("bc-rest", [secret("rest-secret", ["RESTIC_PASSWORD", "REST_SERVER_USERNAME", "REST_SERVER_PASSWORD"]), repo({"rest": {"url": "https://rest.demo.svc:8000/demo/mysql"}}, secret_name="rest-secret"), appbinding, db_secret, bc(), session()], "REST server backend: bucket is the URL host, prefix its path.")
case("bc-local", [secret("local-secret", ["RESTIC_PASSWORD"]), repo({"local": {"mountPath": "/safe/data", "persistentVolumeClaim": {"claimName": "repo-pvc"}}}, secret_name="local-secret"), appbinding, db_secret, bc(), session()], "Local backend on a PVC.")
local_secret = secret("local-secret", ["RESTIC_PASSWORD"])
case("bc-local-nfs", [local_secret, repo({"local": {"mountPath": "/safe/data", "subPath": "demo/mysql", "nfs": {"server": "nfs.demo.svc", "path": "/exports/stash"}}}, secret_name="local-secret"), appbinding, db_secret, bc(), session()], "Local backend on NFS with a subPath: the volume reaches every container of the Job as written.")
case("bc-local-hostpath", [local_secret, repo({"local": {"mountPath": "/safe/data", "hostPath": {"path": "/var/lib/stash-repo", "type": "DirectoryOrCreate"}}}, secret_name="local-secret"), appbinding, db_secret, bc(hooks={"preBackup": {"exec": {"command": ["true"]}, "containerName": "mysql"}}), session()], "Local backend on a hostPath; the hook container mounts it too.")
case("bc-local-no-mountpath", [local_secret, repo({"local": {"persistentVolumeClaim": {"claimName": "repo-pvc"}}}, secret_name="local-secret"), appbinding, db_secret, bc()], "Local backend without mountPath: Invalid, naming spec.backend.local.mountPath.")
case("bc-local-no-volume", [local_secret, repo({"local": {"mountPath": "/safe/data"}}, secret_name="local-secret"), appbinding, db_secret, bc()], "Local backend without a volume source: Invalid, naming spec.backend.local.")
interim = {"metadata": {"name": "interim", "labels": {"team": "db"}}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}}
case("bc-interim-volume", base() + [bc(interimVolumeTemplate=interim), session()], "interimVolumeTemplate: one PVC per session, owned by the session, mounted at /stash-interim-volume.")
case("bc-interim-volume-invalid", base() + [bc(interimVolumeTemplate={"spec": {"resources": {"requests": {"storage": "1Gi"}}}}), session()], "interimVolumeTemplate without accessModes: Invalid, naming spec.interimVolumeTemplate.spec.accessModes; the session is skipped.")
deleting_meta = {"uid": "4e90517e-0000-4000-8000-000000000001", "deletionTimestamp": "2026-11-27T14:59:00Z", "finalizers": ["stash"]}
def deleting_repo(backend, secret_name, **extra):
    r = repo(backend, secret_name=secret_name, extra=dict(wipeOut=True, **extra))
    r["metadata"].update(deleting_meta)
    return r
# The smallest pod spec an API server accepts in a Job, CronJob or Pod (fixtures must be storable).
pod_spec = {"restartPolicy": "Never", "containers": [{"name": "stash", "image": "ghcr.io/stash-rs/stash:v0.1.0"}]}
wipe_job = lambda status: {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "stash-wipeout-s3-repo", "namespace": NS, "labels": {"job-name": "stash-wipeout-s3-repo"}},
    "spec": {"template": {"spec": pod_spec}}, "status": status}
wipe_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stash-wipeout-s3-repo-q8z4x", "namespace": NS, "labels": {"job-name": "stash-wipeout-s3-repo"}},
    "spec": pod_spec,
    "status": {"phase": "Failed", "containerStatuses": [{"name": "wipe-out", "image": "x", "imageID": "", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}
case("repo-wipe-out-start", [s3_secret, deleting_repo(S3, "s3-secret")], "A Repository with wipeOut: true is deleted: a Job (with read access to the storage Secret only) deletes its data; the finalizer stays.")
case("repo-wipe-out-done", [s3_secret, deleting_repo(S3, "s3-secret"), wipe_job({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})], "The wipe-out Job completed: the finalizer goes.")
case("repo-wipe-out-failed", [s3_secret, deleting_repo(S3, "s3-secret"), wipe_job({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}), wipe_pod], "The wipe-out Job failed: the finalizer stays, a condition and an event say why and how to go on.")
case("repo-wipe-out-local-refused", [local_secret, deleting_repo({"local": {"mountPath": "/safe/data", "persistentVolumeClaim": {"claimName": "repo-pvc"}}}, "local-secret")], "wipeOut on a local backend is refused as by Stash: the data stays and the finalizer goes, with a warning event.")
case("repo-wipe-out-local-invalid", [local_secret, repo({"local": {"mountPath": "/safe/data", "hostPath": {"path": "/srv/stash"}}}, secret_name="local-secret", extra={"wipeOut": True})], "wipeOut on a local backend: ValidationPassed False naming spec.wipeOut.")
case("bc-paused", base() + [bc(paused=True)], "Paused: the CronJob is suspended, RBAC stays for manual sessions.")
case("bc-retention-all-fields", base() + [bc(retentionPolicy={"name": "everything", "keepLast": 2, "keepHourly": 24, "keepDaily": 7, "keepWeekly": 4, "keepMonthly": 12, "keepYearly": 3, "keepTags": ["release", "weekly,verified"], "prune": True, "dryRun": True}), session()], "Every retention field reaches the Job's RETENTION_* arguments.")
case("bc-task-params-override", base() + [bc(task={"name": "mysql-backup-8.0.21", "params": [{"name": "args", "value": "--databases shop --single-transaction"}, {"name": "waitTimeout", "value": "60"}, {"name": "multiDumpArgs", "value": ""}, {"name": "HOSTNAME", "value": "primary"}]}), session()], "Invoker params beat the AppBinding addon's and the Functions' defaults; an empty value beats a default.")
case("bc-task-from-appbinding", base() + [bc(task=None), session()], "No spec.task: the Task and its params come from the AppBinding's StashAddon parameters.")
case("bc-hooks", base() + [bc(hooks={"preBackup": {"exec": {"command": ["sh", "-c", "mysql -e 'FLUSH TABLES'"]}, "containerName": "mysql"},
                                       "postBackup": {"httpPost": {"host": "hooks.demo.svc", "path": "/done", "port": 8080, "scheme": "HTTP", "body": "{{ .Status.Phase }}"}, "executionPolicy": "OnFailure"}},
                                runtimeSettings={"pod": {"nodeSelector": {"disk": "ssd"}, "securityContext": {"runAsUser": 65534}, "podAnnotations": {"team": "db"}},
                                                 "container": {"resources": {"requests": {"cpu": "250m", "memory": "128Mi"}}, "nice": {"adjustment": 5}, "ionice": {"class": 2, "classData": 4}, "env": [{"name": "TZ", "value": "UTC"}]}},
                                tempDir={"medium": "Memory", "sizeLimit": "1Gi", "disableCaching": True}), session()], "Hooks become pre-task-hook/post-task-hook containers; runtime settings, nice/ionice env and tempDir reach the pod.")
case("bc-missing-repository", [s3_secret, appbinding, db_secret, bc()], "Repository missing: RepositoryFound False, NotReady, no CronJob, requeue in 5 s.")
case("bc-missing-secret", [repo(S3), appbinding, db_secret, bc()], "Storage Secret missing: BackendSecretFound False, NotReady.")
case("bc-secret-missing-key", [secret("b2-secret", ["RESTIC_PASSWORD"]), repo({"b2": {"bucket": "stash-b2"}}, secret_name="b2-secret"), appbinding, db_secret, bc()], "B2 Secret without B2_ACCOUNT_ID/B2_ACCOUNT_KEY: the condition names the keys.")
case("bc-missing-appbinding", [s3_secret, repo(S3), bc()], "AppBinding missing: BackupTargetFound False, no CronJob.")
case("bc-missing-task", base() + [bc(task={"name": "mysql-backup-9.9.9"})], "Unknown Task: ValidationPassed False naming spec.task.name; phase Invalid.")
case("bc-invalid-cron", base() + [bc(schedule="*/5 * * *")], "Four-field schedule: Invalid, the message names spec.schedule.")
case("bc-invalid-fields", base() + [bc(retentionPolicy={"name": "", "keepLast": -1}, timeOut="soon", backupHistoryLimit=-2, driver="VolumeSnapshotter")], "Several bad fields: each is named in ValidationPassed.")
case("bc-no-backend", [s3_secret, repo({}), appbinding, db_secret, bc()], "A Repository without a backend: Invalid, naming spec.backend.")
longname = "a-very-long-backup-configuration-name-for-the-production-mysql-cluster-in-eu-west"
def bounded(name, limit):
    # stash_core::names::bounded: a prefix, '-' and the FNV-1a 32-bit hash of the whole name.
    if len(name) <= limit: return name
    h = 0x811c9dc5
    for b in name.encode(): h = ((h ^ b) * 0x01000193) & 0xffffffff
    return name[:limit - 9].rstrip("-.") + f"-{h:08x}"
long_session = session(name=longname[:52] + "-1795791000", bc_name=longname)
# Label values are at most 63 characters: the trigger writes the bounded name, as the planners do.
long_session["metadata"]["labels"]["stash.appscode.com/invoker-name"] = bounded(longname, 63)
case("bc-long-names", base() + [bc(metadata={"name": longname}), long_session], "Names past 52/63 characters are bounded with a hash suffix.")
long_cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": bounded("stash-trigger-" + longname, 52), "namespace": NS, "labels": {"stash.appscode.com/invoker-type": "BackupConfiguration", "stash.appscode.com/invoker-name": bounded(longname, 63)}}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}}
case("bc-long-names-deleting", base() + [bc(metadata={"name": longname, "deletionTimestamp": "2026-11-27T14:59:00Z", "finalizers": ["stash.appscode.com"]}), long_cronjob], "Deletion of a BackupConfiguration with a long name: its CronJob, labelled with the bounded name, is found and deleted.")
case("bc-usage-policy-denied", [secret("s3-secret", ["RESTIC_PASSWORD"], ns="backup"), repo(S3, ns="backup"), appbinding, db_secret, bc(repository={"name": "s3-repo", "namespace": "backup"})], "A Repository in another namespace without usagePolicy: Invalid.")
case("bc-usage-policy-selector", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": {"stash/backup": "allowed"}}},
    secret("s3-secret", ["RESTIC_PASSWORD"], ns="backup"), repo(S3, ns="backup", extra={"usagePolicy": {"allowedNamespaces": {"from": "Selector", "selector": {"matchLabels": {"stash/backup": "allowed"}}}}}), appbinding, db_secret, bc(repository={"name": "s3-repo", "namespace": "backup"})], "Cross-namespace Repository allowed by a namespace selector: Ready.")
deleting = bc(metadata={"deletionTimestamp": "2026-11-27T14:59:00Z", "finalizers": ["stash.appscode.com"]})
cj_child = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "stash-trigger-sample-mysql-backup", "namespace": NS, "labels": {"stash.appscode.com/invoker-type": "BackupConfiguration", "stash.appscode.com/invoker-name": "sample-mysql-backup"}}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}}
case("bc-deleting", base() + [deleting, cj_child], "Deletion: children found by label are deleted and the finalizer removed.")
custom_fn = {"apiVersion": "stash.appscode.com/v1beta1", "kind": "Function", "metadata": {"name": "custom-backup"},
    "spec": {"image": "example.com/custom:1", "args": ["backup", "--target=${TARGET_NAME}", "--token=${API_TOKEN}"]}}
custom_task = {"apiVersion": "stash.appscode.com/v1beta1", "kind": "Task", "metadata": {"name": "custom-backup"},
    "spec": {"steps": [{"name": "custom-backup"}, {"name": "update-status", "params": [{"name": "outputDir", "value": "/stash-tmp/output"}]}]}}
case("session-unresolved-variable", base() + [custom_fn, custom_task, bc(task={"name": "custom-backup"}), session()], "A Function variable with no value and no default: BackupExecutorEnsured False naming it, the session Failed; nothing panics.")
case("session-start", base() + [bc(), session()], "A new session of a Ready BackupConfiguration: the backup Job, phase Running.")
older_running = session(name="sample-mysql-backup-1795790700", created="2026-11-27T14:45:00Z", status=running_status())
older_job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "stash-backup-sample-mysql-backup-1795790700-0", "namespace": NS}, "spec": {"template": {"spec": pod_spec}}, "status": {"active": 1}}
case("session-skipped-another-running", base() + [bc(), older_running, older_job, session()], "Another session of the same configuration is Running: Skipped.")
case("session-skipped-not-ready", [s3_secret, appbinding, db_secret, bc(), session()], "The configuration is not Ready (no Repository): Skipped.")
# Hand-written sessions (no invoker labels) count by spec.invoker; a BackupBatch's session of
# the same name does not.
manual_running = session(name="manual-backup-1", created="2026-11-27T14:45:00Z", status=running_status(), labels=False)
manual_running["status"]["targets"][0]["conditions"][0]["message"] = "Backup job stash-backup-manual-backup-1-0 has been ensured successfully."
manual_job = dict(older_job, metadata={"name": "stash-backup-manual-backup-1-0", "namespace": NS})
batch_running = session(name="batch-backup-1", created="2026-11-27T14:40:00Z", status=running_status(), invoker_kind="BackupBatch", labels=False)
batch_running["status"]["targets"][0]["conditions"][0]["message"] = "Backup job stash-backup-batch-backup-1-0 has been ensured successfully."
batch_job = dict(older_job, metadata={"name": "stash-backup-batch-backup-1-0", "namespace": NS})
case("session-manual-skipped-running", base() + [bc(), batch_running, batch_job, manual_running, manual_job, session(name="manual-backup-2", labels=False)],
     "A hand-written session without invoker labels is Running: the next one is Skipped naming it; a BackupBatch's session of the same name does not count.")
evaluated_earlier = bc(metadata={"generation": 2})
evaluated_earlier["status"] = {"observedGeneration": 1, "phase": "NotReady", "conditions": [{"type": "RepositoryFound", "status": "False", "reason": "RepositoryNotAvailable", "message": "Repository demo/s3-repo does not exist.", "lastTransitionTime": T0, "observedGeneration": 1}]}
case("session-waits-for-configuration", base() + [evaluated_earlier, session(labels=False)],
     "The configuration's status is from an older generation (not evaluated yet): the session waits Pending, requeued, instead of being Skipped.")
failed_job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "stash-backup-sample-mysql-backup-1795791000-0", "namespace": NS},
    "spec": {"template": {"spec": pod_spec}},
    "status": {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}}
failed_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stash-backup-sample-mysql-backup-1795791000-0-x7k2p", "namespace": NS, "labels": {"job-name": "stash-backup-sample-mysql-backup-1795791000-0"}},
    "spec": pod_spec,
    "status": {"phase": "Failed", "initContainerStatuses": [{"name": "mysql-backup-8-0-21-0", "image": "x", "imageID": "", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}
case("session-job-failed", base() + [bc(), session(status=running_status()), failed_job, failed_pod], "The backup pod was OOM-killed: the session ends Failed with the container and exit code.")
case("session-job-deleted", base() + [bc(), session(status=running_status())], "The backup Job vanished: Failed with a reason instead of Running forever.")
case("session-timeout", base() + [bc(timeOut="10m"), session(created="2026-11-27T14:30:00Z", status=running_status()), dict(failed_job, status={"active": 1})], "Past the deadline: DeadlineExceeded, Failed, and the Job is deleted.")
succ = running_status()
succ["targets"][0]["stats"] = [{"hostname": "host-0", "phase": "Succeeded", "duration": "5.123s", "snapshots": [{"name": "b30beb44", "path": "dumpfile.sql", "totalSize": "3.408 MiB", "uploaded": "1.101 MiB", "processingTime": "0:02", "fileStats": {"totalFiles": 1, "newFiles": 1, "modifiedFiles": 0, "unmodifiedFiles": 0}}]}]
succ["conditions"] = [{"type": "RetentionPolicyApplied", "status": "True", "reason": "SuccessfullyAppliedRetentionPolicy", "message": "Successfully applied retention policy.", "lastTransitionTime": T0}]
old = lambda n, t, p: session(name=n, created=t, status={"phase": p})
case("session-succeeded-history", base() + [bc(backupHistoryLimit=2), session(status=succ),
    old("sample-mysql-backup-1795790400", "2026-11-27T14:40:00Z", "Succeeded"), old("sample-mysql-backup-1795790100", "2026-11-27T14:35:00Z", "Failed"),
    old("sample-mysql-backup-1795789800", "2026-11-27T14:30:00Z", "Skipped"), old("sample-mysql-backup-1795789500", "2026-11-27T14:25:00Z", "Succeeded")],
    "Results reported: Succeeded; finished sessions beyond backupHistoryLimit 2 are deleted.")
mold = lambda n, t, p: session(name=n, created=t, status={"phase": p}, labels=False)
case("session-manual-history", base() + [bc(backupHistoryLimit=2), session(status=succ, labels=False),
    mold("manual-backup-a", "2026-11-27T14:40:00Z", "Succeeded"), mold("manual-backup-b", "2026-11-27T14:35:00Z", "Failed"),
    mold("manual-backup-c", "2026-11-27T14:30:00Z", "Skipped"), old("sample-mysql-backup-1795789500", "2026-11-27T14:25:00Z", "Succeeded")],
    "History cleanup counts hand-written sessions without invoker labels: beyond backupHistoryLimit 2 they are deleted too.")
failed_stats = running_status()
failed_stats["targets"][0]["stats"] = [{"hostname": "host-0", "phase": "Failed", "duration": "1.2s", "error": "mariadb-dump exited with status 2: Access denied for user 'backup'"}]
case("session-retry", base() + [bc(retryConfig={"maxRetry": 2, "delay": "5m"}), session(status=failed_stats, retry_left=2)], "A failed session with retries left: Failed now, a retry scheduled after the delay.")
case("restore-latest", base() + [restore()], "Restore of the latest snapshot: the Job stash-restore-<rs>-0 and its RBAC.")
case("restore-snapshot-id", base() + [restore(target={"rules": [{"snapshots": ["4bc21d6f"]}]})], "Restore of an explicit snapshot id.")
case("restore-alias-sourcehost", base() + [restore(target={"alias": "replica-1", "rules": [{"targetHosts": ["replica-1"], "sourceHost": "host-0", "snapshots": ["latest"]}, {"snapshots": ["deadbeef"]}]})], "Alias with a rule naming it: HOSTNAME replica-1, SOURCE_HOSTNAME host-0.")
case("restore-invalid-rules", base() + [restore(target={"rules": [{"snapshots": ["latest"]}, {"paths": ["/x"]}]})], "Two rules without targetHosts: Invalid, naming spec.target.rules.")
case("restore-local", [local_secret, repo({"local": {"mountPath": "/safe/data", "persistentVolumeClaim": {"claimName": "repo-pvc"}}}, secret_name="local-secret"), appbinding, db_secret, restore(interimVolumeTemplate=interim)], "Restore from a local backend on a PVC, with an interim volume: both mounted in the restore Job.")
case("restore-missing-repository", [s3_secret, appbinding, db_secret, restore()], "Repository missing: Pending, requeue.")


# Hooks (stash.md §9): run-hook writes the hook conditions; the planner ends or waits on them.
pre_hook = {"exec": {"command": ["sh", "-c", "exit 3"]}, "containerName": "mysql"}
post_hook = {"httpPost": {"host": "hooks.demo.svc", "path": "/done", "port": 8080, "scheme": "HTTP", "body": "{{ .Status.Phase }}"}, "executionPolicy": "OnSuccess"}
def hook_cond(t, ok, msg):
    kind = t[0].upper() + t[1:]
    return {"type": f"{kind}HookExecutionSucceeded", "status": "True" if ok else "False",
            "reason": ("SuccessfullyExecuted" if ok else "FailedToExecute") + f"{kind}Hook", "message": msg, "lastTransitionTime": T0}
pre_failed = running_status()
pre_failed["targets"][0]["conditions"].append(hook_cond("preBackup", False, "Failed to execute preBackup hook. Reason: command terminated with non-zero exit code: 3"))
pre_failed["targets"][0]["stats"] = [{"hostname": "host-0", "phase": "Failed", "error": "command terminated with non-zero exit code: 3"}]
hook_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stash-backup-sample-mysql-backup-1795791000-0-h00k5", "namespace": NS, "labels": {"job-name": "stash-backup-sample-mysql-backup-1795791000-0"}},
    "spec": pod_spec,
    "status": {"phase": "Failed", "initContainerStatuses": [{"name": "pre-task-hook", "image": "x", "imageID": "", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}}
case("session-prehook-failed", base() + [bc(hooks={"preBackup": pre_hook}), session(status=pre_failed), failed_job, hook_pod], "The preBackup hook failed: the target and session are Failed with the hook's reason; no backup ran.")
active_job = dict(failed_job, status={"active": 1})
awaiting = copy.deepcopy(succ)
case("session-posthook-pending", base() + [bc(hooks={"postBackup": post_hook}), session(status=awaiting), active_job], "The backup reported but the postBackup hook has not: the session stays Running.")
post_failed = copy.deepcopy(succ)
post_failed["targets"][0]["conditions"].append(hook_cond("postBackup", False, "Failed to execute postBackup hook. Reason: HTTP probe failed with statuscode: 500"))
case("session-posthook-failed", base() + [bc(hooks={"postBackup": post_hook}), session(status=post_failed), active_job], "The postBackup hook failed after a good backup: the session is Failed.")
post_skipped = copy.deepcopy(succ)
post_skipped["targets"][0]["conditions"].append(hook_cond("postBackup", True, "Skipping executing postBackup. Reason: executionPolicy is \"OnFailure\" but phase is \"Succeeded\"."))
case("session-posthook-skipped", base() + [bc(hooks={"postBackup": dict(post_hook, executionPolicy="OnFailure")}), session(status=post_skipped), active_job], "The postBackup hook was skipped by its policy (True condition): the session Succeeds.")
complete_job = dict(failed_job, status={"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
case("session-posthook-missing", base() + [bc(hooks={"postBackup": post_hook}), session(status=copy.deepcopy(succ)), complete_job], "The Job completed without the postBackup hook's result: Failed, naming the hook.")
def restore_running(conds=(), stats=None):
    st = {"phase": "Running", "totalHosts": 1, "conditions": [
        {"type": "RepositoryFound", "status": "True", "reason": "RepositoryAvailable", "message": "Repository demo/s3-repo exist.", "lastTransitionTime": T0, "observedGeneration": 1},
        {"type": "BackendSecretFound", "status": "True", "reason": "BackendSecretAvailable", "message": "Backend Secret demo/s3-secret exist.", "lastTransitionTime": T0, "observedGeneration": 1},
        {"type": "RestoreTargetFound", "status": "True", "reason": "TargetAvailable", "message": "Restore target AppBinding demo/sample-mysql found.", "lastTransitionTime": T0, "observedGeneration": 1},
        {"type": "ValidationPassed", "status": "True", "reason": "ResourceValidationPassed", "message": "Successfully validated.", "lastTransitionTime": T0, "observedGeneration": 1},
        {"type": "RestoreExecutorEnsured", "status": "True", "reason": "SuccessfullyEnsuredRestoreExecutor", "message": "Restorer job/init-container has been ensured successfully for AppBinding demo/sample-mysql.", "lastTransitionTime": T0, "observedGeneration": 1}] + list(conds)}
    if stats: st["stats"] = stats
    return st
restore_job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "stash-restore-sample-mysql-restore-0", "namespace": NS}, "spec": {"template": {"spec": pod_spec}}, "status": {"active": 1}}
def restore_with(status, **spec):
    r = restore(**spec)
    r["metadata"]["finalizers"] = ["stash.appscode.com"]
    r["status"] = status
    return r
case("restore-prehook-failed", base() + [restore_with(restore_running([hook_cond("preRestore", False, "Failed to execute preRestore hook. Reason: no pod found for AppBinding demo/sample-mysql")]), hooks={"preRestore": pre_hook}), dict(restore_job, status={"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]})], "The preRestore hook failed: Failed with the hook's reason as the host error.")
restored = [{"hostname": "host-0", "phase": "Succeeded", "duration": "3.2s"}]
case("restore-posthook-pending", base() + [restore_with(restore_running(stats=restored), hooks={"postRestore": post_hook}), restore_job], "The restore reported but the postRestore hook has not: Running.")
case("restore-posthook-failed", base() + [restore_with(restore_running([hook_cond("postRestore", False, "Failed to execute postRestore hook. Reason: connection refused")], stats=restored), hooks={"postRestore": post_hook}), restore_job], "The postRestore hook failed: the restore is Failed.")

# update-status cases: fixtures/update-status/<case>/ holds objects.yaml (the session and its
# invoker), output.json as the data step wrote it (absent: the step never finished) and job.yaml
# (the Job's target flags and what each repository action answers). Review with
# INSTA_UPDATE=always cargo test -p stash-core --test update_status
import json
us_cases = {}
def us_case(name, objs, readme, output=None, results=None, flags=None, raw_output=None):
    us_cases[name] = (objs, readme, output, raw_output, {"flags": flags or {"kind": "AppBinding", "name": "sample-mysql", "namespace": ""}, "results": results or {}})
ab_ref = {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "sample-mysql", "namespace": NS}
snap_row = {"name": "b30beb44", "path": "dumpfile.sql", "totalSize": "3.408 MiB", "uploaded": "1.101 MiB", "processingTime": "0:02",
            "fileStats": {"totalFiles": 1, "newFiles": 1, "modifiedFiles": 0, "unmodifiedFiles": 0}}
def out(*rows, ref=ab_ref):
    return {"targetStatus": {"ref": ref, "stats": list(rows)}}
ok_row = {"hostname": "host-0", "phase": "Succeeded", "duration": "5.123s", "snapshots": [snap_row]}
def listing(*minutes, host="host-0"):
    return [{"id": f"{zlib.crc32(f'{host}{m}'.encode()):08x}" * 8, "time": f"2026-11-27T14:{m:02d}:00.{m:03d}Z", "host": host} for m in minutes]
four = listing(35, 40, 45, 50)
ok_stats = {"stats": {"totalSize": 3_573_547, "snapshotCount": 2}}
running = lambda: session(status=running_status())
keep2 = {"name": "keep-last-2", "keepLast": 2, "prune": True}
us_case("backup-retention", [bc(retentionPolicy=keep2), running()], "A good backup under keepLast 2 with four snapshots: list, forget exactly the two oldest (pruned), check, stats; the Repository gets the figures.",
        out(ok_row), {"listSnapshots": four, "forget": "ok", "check": "ok", **ok_stats})
us_case("backup-retention-two-hosts", [bc(retentionPolicy={"name": "keep-last-1", "keepLast": 1}), running()], "Retention groups by host and paths over the whole repository, as restic does: keepLast 1 keeps one per host; no prune asked.",
        out(ok_row), {"listSnapshots": four + listing(30, 55, host="host-1"), "forget": "ok", "check": "ok", **ok_stats})
us_case("backup-keeps-everything", [bc(retentionPolicy={"name": "keep-all"}), running()], "A policy without keep rules keeps every snapshot: no listing, no forget; check and stats run.",
        out(ok_row), {"check": "ok", **ok_stats})
us_case("backup-dry-run", [bc(retentionPolicy={"name": "dry", "keepLast": 1, "dryRun": True}), running()], "dryRun: the selection is computed and reported, nothing is forgotten.",
        out(ok_row), {"listSnapshots": four, "check": "ok", **ok_stats})
us_case("backup-nothing-to-forget", [bc(), running()], "keepLast 5 with four snapshots: nothing to forget, no forget action.",
        out(ok_row), {"listSnapshots": four, "check": "ok", **ok_stats})
us_case("backup-forget-failed", [bc(retentionPolicy=keep2), running()], "The forget fails (lock held): RetentionPolicyApplied False and nothing after it runs; the Repository status is left alone.",
        out(ok_row), {"listSnapshots": four, "forget": {"failed": "repository is locked: by PID 7 on host-x"}})
us_case("backup-check-failed", [bc(retentionPolicy=keep2), running()], "The integrity check fails: RepositoryIntegrityVerified False, no stats; the Repository records integrity false.",
        out(ok_row), {"listSnapshots": four, "forget": "ok", "check": {"failed": "check failed (exit status: 1): pack 5e1f damaged"}})
us_case("backup-stats-failed", [bc(retentionPolicy=keep2), running()], "Measuring fails: RepositoryMetricsPushed False; the rest is recorded.",
        out(ok_row), {"listSnapshots": four, "forget": "ok", "check": "ok", "stats": {"failed": "stats failed (exit status: 1): timeout"}})
us_case("backup-engine-unavailable", [bc(retentionPolicy=keep2), running()], "The repository cannot be opened: the first action (the listing) fails, so retention is False and nothing else runs.",
        out(ok_row), {"listSnapshots": {"failed": "cannot run restic: No such file or directory (os error 2)"}})
us_case("backup-host-failed", [bc(), running()], "The host's backup failed: no repository action, a Warning event with the reason.",
        out({"hostname": "host-0", "phase": "Failed", "duration": "1.2s", "error": "mysqldump: Got error: 1045: Access denied for user 'root'"}))
us_case("backup-output-missing", [bc(), running()], "No output.json (the data step died): a failed host-0 for the target the flags name.")
alias_bc = bc(target={"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "sample-mysql"}, "alias": "primary"})
us_case("backup-output-missing-alias", [alias_bc, running()], "No output.json and a target alias: the failed host is the alias; the flags name another namespace.",
        flags={"kind": "", "name": "sample-mysql", "namespace": "databases"})
us_case("backup-output-bad-row", [bc(), running()], "output.json with a row that does not parse: an error naming the row, never a silently dropped host.",
        raw_output=json.dumps(out(ok_row, {"hostname": "host-1", "phase": "Done"}), indent=2))
us_case("backup-lone-target", [bc(retentionPolicy={"name": "keep-all"}), running()], "output.json names the target differently from the session's only entry: the rows go into that entry, not a new one.",
        out(ok_row, ref=dict(ab_ref, name="sample-mysql-0")), {"check": "ok", **ok_stats})
us_case("backup-no-configuration", [running()], "The BackupConfiguration is gone: no retention rule; check and stats run, but no Repository to record them on.",
        out(ok_row), {"check": "ok", **ok_stats})
us_case("restore-succeeded", [restore()], "A restore reported: the host row and a Normal event.",
        out({"hostname": "host-0", "phase": "Succeeded", "duration": "3.2s"}))
us_case("restore-output-missing", [restore(target={"alias": "replica"})], "A restore without output.json: a failed host named by the target's alias.")

# fixtures/invalid is the hand-written bad-input corpus (tests/invalid_inputs.rs): keep it.
for entry in os.listdir(root) if os.path.isdir(root) else []:
    if entry != "invalid":
        shutil.rmtree(os.path.join(root, entry))
for name, (objs, readme) in cases.items():
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "objects.yaml"), "w") as f:
        f.write(f"# {readme}\n")
        yaml.safe_dump_all(objs, f, sort_keys=False, default_flow_style=False)
for name, (objs, readme, output, raw_output, job) in us_cases.items():
    d = os.path.join(root, "update-status", name)
    os.makedirs(d)
    with open(os.path.join(d, "objects.yaml"), "w") as f:
        f.write(f"# {readme}\n")
        yaml.safe_dump_all(objs, f, sort_keys=False, default_flow_style=False)
    with open(os.path.join(d, "job.yaml"), "w") as f:
        yaml.safe_dump(job, f, sort_keys=False, default_flow_style=False)
    if output is not None or raw_output is not None:
        with open(os.path.join(d, "output.json"), "w") as f:
            f.write(raw_output if raw_output is not None else json.dumps(output, indent=2))
print(len(cases), "cases,", len(us_cases), "update-status cases")
