#!/usr/bin/env python3
"""Loads N BackupConfigurations, each with its Repository, AppBinding and two Secrets, spread
over NAMESPACES namespaces, into a Kubernetes API server (plain HTTP, as stash-testkit serves),
and polls how many are Ready with their CronJob.

  load.py URL N NAMESPACES            create everything
  load.py URL N NAMESPACES --ready    print "<ready BackupConfigurations> <CronJobs>"
"""
import http.client
import json
import sys
import threading
import urllib.parse

AGENT = "bench-controlplane"


def connect(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=120)


def request(conn, method, path, body=None):
    headers = {"User-Agent": AGENT, "Authorization": "Bearer stash-testkit"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    text = resp.read()
    if resp.status >= 300 and resp.status != 409:
        raise SystemExit(f"{method} {path}: {resp.status} {text[:300]!r}")
    return json.loads(text) if text else None


def objects_for(i, namespaces):
    ns = f"bench-{i % namespaces:03d}"
    n = f"db-{i:05d}"
    yield f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": f"{n}-repo", "namespace": ns},
        "type": "Opaque",
        "stringData": {"RESTIC_PASSWORD": "not-a-secret", "AWS_ACCESS_KEY_ID": "k",
                       "AWS_SECRET_ACCESS_KEY": "s"},
    }
    yield f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": f"{n}-auth", "namespace": ns},
        "type": "Opaque",
        "stringData": {"username": "root", "password": "not-a-secret"},
    }
    yield f"/apis/stash.appscode.com/v1alpha1/namespaces/{ns}/repositories", {
        "apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository",
        "metadata": {"name": f"{n}-repo", "namespace": ns},
        "spec": {"backend": {"storageSecretName": f"{n}-repo",
                             "s3": {"endpoint": "http://s3.invalid:9000", "bucket": "b",
                                    "prefix": f"/{ns}/{n}"}}},
    }
    yield f"/apis/appcatalog.appscode.com/v1alpha1/namespaces/{ns}/appbindings", {
        "apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
        "metadata": {"name": n, "namespace": ns},
        "spec": {"type": "kubedb.com/mysql", "version": "8.0.21",
                 "clientConfig": {"url": f"tcp({n}.{ns}.svc:3306)/",
                                  "service": {"name": n, "port": 3306, "scheme": "mysql"}},
                 "secret": {"name": f"{n}-auth"}},
    }
    yield f"/apis/stash.appscode.com/v1beta1/namespaces/{ns}/backupconfigurations", {
        "apiVersion": "stash.appscode.com/v1beta1", "kind": "BackupConfiguration",
        "metadata": {"name": n, "namespace": ns},
        "spec": {"schedule": "0 3 * * *", "task": {"name": "mysql-backup-8.0.21"},
                 "repository": {"name": f"{n}-repo"},
                 "target": {"ref": {"apiVersion": "appcatalog.appscode.com/v1alpha1",
                                    "kind": "AppBinding", "name": n}},
                 "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True}},
    }


def load(url, n, namespaces, workers=4):
    conn = connect(url)
    for name in ["stash"] + [f"bench-{k:03d}" for k in range(min(n, namespaces))]:
        request(conn, "POST", "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def work(part):
        c = connect(url)
        for i in range(part, n, workers):
            for path, body in objects_for(i, namespaces):
                request(c, "POST", path, body)

    threads = [threading.Thread(target=work, args=(p,)) for p in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def ready(url):
    conn = connect(url)
    bcs = request(conn, "GET", "/apis/stash.appscode.com/v1beta1/backupconfigurations")
    cjs = request(conn, "GET", "/apis/batch/v1/cronjobs")
    names = {(c["metadata"]["namespace"], c["metadata"]["name"]) for c in cjs["items"]}
    n = 0
    for bc in bcs["items"]:
        m = bc["metadata"]
        if (bc.get("status") or {}).get("phase") == "Ready" and \
                (m["namespace"], f"stash-trigger-{m['name']}") in names:
            n += 1
    print(n, len(cjs["items"]))


if __name__ == "__main__":
    url, n, namespaces = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if "--ready" in sys.argv:
        ready(url)
    else:
        load(url, n, namespaces)
