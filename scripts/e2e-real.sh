#!/usr/bin/env bash
# The operator end to end on a REAL control plane: kube-apiserver, etcd and
# kube-controller-manager from $KUBE_BIN (built outside this repository, see
# shared/reference/realapi.md), the testkit's kubelet as the node agent, `stash run` as the
# operator, a private MariaDB and the embedded S3 server from the testkit. Driven with kubectl
# and real time:
#   1. a `*/1 * * * *` BackupConfiguration with keepLast 2 takes three backups, leaving 2 snapshots;
#   2. a restore into a second MariaDB has equal checksums;
#   3. a paused configuration takes no backup;
#   4. a backup pod killed mid-dump ends its session Failed;
#   5. deleting the configuration removes its children.
# Without KUBE_BIN (as in CI) it says so and exits 0. It takes about 8 minutes.
#
# Environment: KUBE_BIN (folder with kube-apiserver, etcd, kube-controller-manager);
# CARGO_TARGET_DIR as for cargo; KEEP=1 keeps the work folder; SCENARIOS picks some of
# "backups paused_and_restore killed delete" (default: all, in that order).
set -euo pipefail

if [[ -z "${KUBE_BIN:-}" ]]; then
  echo "e2e-real: KUBE_BIN is not set; skipping (needs kube-apiserver, etcd, kube-controller-manager)"
  exit 0
fi
for b in kube-apiserver etcd kube-controller-manager; do
  if [[ ! -x "$KUBE_BIN/$b" ]]; then
    echo "e2e-real: $KUBE_BIN/$b is missing; skipping"
    exit 0
  fi
done
for tool in openssl curl jq kubectl mariadb restic; do
  command -v "$tool" >/dev/null || { echo "e2e-real: $tool is not on PATH" >&2; exit 1; }
done

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/stash-e2e-real.XXXXXX)
pids=()
provider_pids=()
provider_fds=()
results=()
failed=0
started_at=$(date +%s)

log() { printf '[e2e-real %4ss] %s\n' "$(($(date +%s) - started_at))" "$*"; }
pass() { results+=("PASS  $*"); log "PASS: $*"; }
fail() { results+=("FAIL  $*"); log "FAIL: $*"; failed=1; }

stop() { # PID: TERM, then KILL after 10 s
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.2
  done
  kill -9 "$1" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  # Providers stop (and remove their servers) at end of input.
  for fd in "${provider_fds[@]}"; do
    exec {fd}>&-
  done
  for pid in "${provider_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    stop "${pids[$i]}"
  done
  if [[ "${KEEP:-}" == 1 || $rc -ne 0 || $failed -ne 0 ]]; then
    echo "e2e-real: logs and state kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2
  shift 2
  local until=$(($(date +%s) + limit))
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) > until)); then
      log "timed out after ${limit}s waiting for $what"
      return 1
    fi
    sleep 1
  done
}

# --- Binaries of this repository ---------------------------------------------------------
log "building stash and stash-testkit"
(cd "$repo" && cargo build -q -p stash-operator -p stash-testkit --bins)
target=${CARGO_TARGET_DIR:-$repo/target}
stash=$target/debug/stash
testkit=$target/debug/stash-testkit
image=$(grep -o 'DEFAULT_IMAGE: &str = "[^"]*"' "$repo/stash-core/src/plan/mod.rs" | cut -d'"' -f2)

# --- Certificates, token, service-account keys ----------------------------------------------
pki=$work/pki
mkdir -p "$pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=e2e-real-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
  -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' >"$pki/san.ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 2 -extfile "$pki/san.ext" -out "$pki/server.crt" 2>/dev/null
openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
token=$(openssl rand -hex 16)
printf '%s,e2e-admin,e2e-admin,"system:masters"\n' "$token" >"$pki/tokens.csv"

# --- etcd, kube-apiserver, kube-controller-manager -------------------------------------------
etcd_port=$(free_port)
peer_port=$(free_port)
api_port=$(free_port)
"$KUBE_BIN/etcd" --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
pids+=($!)
"$KUBE_BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$pki/server.crt" --tls-private-key-file "$pki/server.key" \
  --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
  --authorization-mode AlwaysAllow \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 --endpoint-reconciler-type none \
  >"$work/kube-apiserver.log" 2>&1 &
pids+=($!)
kubeconfig=$work/kubeconfig
cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e-real
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: e2e-admin
  user:
    token: $token
contexts:
- name: e2e-real
  context: {cluster: e2e-real, user: e2e-admin, namespace: default}
current-context: e2e-real
EOF
export KUBECONFIG=$kubeconfig
k() { kubectl --cache-dir "$work/kubectl-cache" "$@" 2>> "$work/kubectl.stderr"; }
wait_for 60 "kube-apiserver /readyz" curl -sf --cacert "$pki/ca.crt" -H "Authorization: Bearer $token" \
  "https://127.0.0.1:$api_port/readyz"
log "kube-apiserver ready: $(k version -o json | jq -r .serverVersion.gitVersion)"
"$KUBE_BIN/kube-controller-manager" --kubeconfig "$kubeconfig" --leader-elect=false \
  --controllers garbagecollector,namespace,serviceaccount,serviceaccount-token,root-ca-cert-publisher,job,cronjob,ttl-after-finished,deployment,replicaset \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --use-service-account-credentials=false --secure-port 0 \
  >"$work/kube-controller-manager.log" 2>&1 &
pids+=($!)
wait_for 60 "the default ServiceAccount" k get serviceaccount default -n default

# --- The node agent and the operator -------------------------------------------------------
"$testkit" kubelet --kubeconfig "$kubeconfig" --node-name e2e-node --root "$work/node" \
  --exec "$image=$stash" >"$work/kubelet.log" 2>&1 &
pids+=($!)
wait_for 30 "the Node" k get node e2e-node
k apply --server-side -f "$repo/deploy/crds.yaml" >/dev/null
k wait --for condition=Established --timeout 60s -f "$repo/deploy/crds.yaml" >/dev/null
"$stash" run --metrics-addr 127.0.0.1:0 --namespace default --image "$image" >"$work/operator.log" 2>&1 &
pids+=($!)

# --- MariaDB (source and target) and S3 from the testkit -------------------------------------
provider() { # NAME KIND: starts `stash-testkit KIND`, kept alive by an open fifo, JSON in $work/NAME.json
  local fd
  mkfifo "$work/$1.in"
  "$testkit" "$2" <"$work/$1.in" >"$work/$1.json" 2>"$work/$1.log" &
  provider_pids+=($!)
  exec {fd}>"$work/$1.in"
  provider_fds+=("$fd")
  wait_for 60 "the $1 provider" test -s "$work/$1.json"
}
provider source mysql
provider target mysql
provider s3 s3
field() { jq -r ".$2" "$work/$1.json"; }
sql() { # NAME SQL...
  local who=$1
  shift
  $(field "$who" rootClient) -N -B -e "$*"
}
sql source "CREATE DATABASE shop; USE shop; \
  CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(64), note TEXT); \
  CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, customer INT, amount DECIMAL(10,2), memo TEXT); \
  INSERT INTO shop.customers SELECT seq, CONCAT('customer ', seq), CONCAT('it''s \"quoted\" ', seq) FROM seq_1_to_500; \
  INSERT INTO shop.orders SELECT seq, 1 + seq % 500, (seq * 37 % 100000) / 100, REPEAT('x', seq % 50) FROM seq_1_to_5000;"
mkdir -p "$(field s3 root)/stash-e2e"

objects=$work/objects.yaml
appbinding() { # NAME PROVIDER
  cat <<EOF
---
apiVersion: v1
kind: Secret
metadata: {name: $1-auth, namespace: demo}
stringData: {username: "$(field "$2" user)", password: "$(field "$2" password)"}
---
apiVersion: appcatalog.appscode.com/v1alpha1
kind: AppBinding
metadata: {name: $1, namespace: demo}
spec:
  type: kubedb.com/mysql
  version: "10.11"
  clientConfig: {url: "tcp(127.0.0.1:$(field "$2" port))/"}
  secret: {name: $1-auth}
EOF
}
{
  cat <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Secret
metadata: {name: s3-secret, namespace: demo}
stringData:
  RESTIC_PASSWORD: e2e-repository-password
  AWS_ACCESS_KEY_ID: "$(field s3 accessKey)"
  AWS_SECRET_ACCESS_KEY: "$(field s3 secretKey)"
---
apiVersion: stash.appscode.com/v1alpha1
kind: Repository
metadata: {name: s3-repo, namespace: demo}
spec:
  backend:
    storageSecretName: s3-secret
    s3: {endpoint: "$(field s3 endpoint)", bucket: stash-e2e, prefix: /demo/mysql, region: us-east-1}
EOF
  appbinding source-mysql source
  appbinding restored-mysql target
} >"$objects"
k apply --server-side -f "$objects" >/dev/null
wait_for 30 "the demo ServiceAccount" k get serviceaccount default -n demo
bc_yaml() { # PAUSED
  cat <<EOF
apiVersion: stash.appscode.com/v1beta1
kind: BackupConfiguration
metadata: {name: every-minute, namespace: demo}
spec:
  schedule: "*/1 * * * *"
  paused: $1
  task:
    name: mysql-backup-8.0.21
    params: [{name: args, value: "--databases shop --single-transaction"}]
  repository: {name: s3-repo}
  target: {ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: source-mysql}}
  retentionPolicy: {name: keep-last-2, keepLast: 2, prune: true}
  backupHistoryLimit: 10
EOF
}

sessions() { # PHASE: names of this configuration's sessions in that phase ("" for all)
  k get backupsessions -n demo -o json |
    jq -r --arg p "$1" '.items[] | select(.spec.invoker.name == "every-minute") | select($p == "" or .status.phase == $p) | .metadata.name'
}
count() { sessions "$1" | grep -c . || true; }
snapshots() {
  RESTIC_PASSWORD=e2e-repository-password AWS_ACCESS_KEY_ID=$(field s3 accessKey) \
    AWS_SECRET_ACCESS_KEY=$(field s3 secretKey) \
    restic --no-cache -r "s3:$(field s3 endpoint)/stash-e2e/demo/mysql" snapshots --json 2>/dev/null |
    jq length
}

show_sessions() {
  k get backupsessions -n demo -o json | jq -r '.items[] | "    " + .metadata.name + " " + (.status.phase // "-") + " " +
    ((.status.conditions // []) | map(.type + "=" + .status + " " + (.message // "")) | join("; "))'
}

scenario_backups() {
# --- 1. three scheduled backups, keepLast 2 --------------------------------------------------
log "scenario 1: */1 schedule, keepLast 2 (about 3-4 minutes)"
bc_yaml false | k apply --server-side -f - >/dev/null
if wait_for 60 "the BackupConfiguration to be Ready" \
  sh -c "kubectl get bc every-minute -n demo -o jsonpath='{.status.phase}' | grep -qx Ready"; then
  log "BackupConfiguration Ready; CronJob $(k get cronjob -n demo -o name | tr '\n' ' ')"
fi
if wait_for 300 "three Succeeded sessions" sh -c "[ \$(kubectl get backupsessions -n demo -o json | jq '[.items[] | select(.status.phase == \"Succeeded\")] | length') -ge 3 ]"; then
  sleep 5
  log "kubelet events: $(k get events -n demo -o json | jq -r '[.items[] | select(.source.component == "kubelet" or .reportingComponent == "kubelet")] | length') from the kubelet;" \
    "service-account tokens projected: $(find "$work/node/pods" -path '*kube-api-access-*/token' | wc -l)"
  n=$(snapshots)
  if [[ "$n" == 2 ]]; then
    pass "three scheduled backups ($(count Succeeded) sessions Succeeded), $n snapshots kept"
  else
    fail "three scheduled backups left $n snapshots, expected 2"
  fi
else
  fail "three scheduled backups: sessions $(k get backupsessions -n demo --no-headers 2>&1 | tr '\n' ';')"
fi
}

scenario_paused_and_restore() {
# --- 3. paused: no backup (while the restore runs) -----------------------------------------
log "scenario 3: paused configuration (70 s), scenario 2: restore meanwhile"
bc_yaml true | k apply --server-side -f - >/dev/null
wait_for 30 "running sessions to end" sh -c "[ -z \"\$(kubectl get backupsessions -n demo -o json | jq -r '.items[] | select(.status.phase == null or .status.phase == \"Running\" or .status.phase == \"Pending\") | .metadata.name')\" ]" || true
before=$(count "")
paused_at=$(date +%s)

# --- 2. restore ----------------------------------------------------------------------------
cat <<EOF | k apply --server-side -f - >/dev/null
apiVersion: stash.appscode.com/v1beta1
kind: RestoreSession
metadata: {name: restore, namespace: demo}
spec:
  task: {name: mysql-restore-8.0.21}
  repository: {name: s3-repo}
  target:
    ref: {apiVersion: appcatalog.appscode.com/v1alpha1, kind: AppBinding, name: restored-mysql}
    rules: [{snapshots: [latest]}]
EOF
if k wait -n demo --for=jsonpath='{.status.phase}'=Succeeded restoresession/restore --timeout=120s >/dev/null; then
  a=$(sql source "CHECKSUM TABLE shop.customers, shop.orders EXTENDED")
  b=$(sql target "CHECKSUM TABLE shop.customers, shop.orders EXTENDED")
  if [[ -n "$a" && "$a" == "$b" ]]; then
    pass "restore: checksums equal ($(echo "$a" | tr '\t\n' ' '))"
  else
    fail "restore: checksums differ: [$a] vs [$b]"
  fi
else
  fail "restore: $(k get restoresession restore -n demo -o jsonpath='{.status}')"
fi
sleep $((70 - ($(date +%s) - paused_at) > 0 ? 70 - ($(date +%s) - paused_at) : 0))
after=$(count "")
suspended=$(k get cronjob -n demo -o jsonpath='{.items[*].spec.suspend}')
if [[ "$after" == "$before" && "$suspended" == true ]]; then
  pass "paused: no session in $(($(date +%s) - paused_at)) s (CronJob suspend=$suspended)"
else
  fail "paused: sessions $before -> $after, CronJob suspend=$suspended"
fi
}

scenario_killed() {
# --- 4. a backup pod killed mid-dump -------------------------------------------------------
log "scenario 4: backup pod killed mid-dump"
# A write lock on one table makes the dump wait inside that table: mid-dump, for as long as we like.
$(field source rootClient) -e "LOCK TABLES shop.orders WRITE; SELECT SLEEP(600);" >/dev/null 2>&1 &
locker=$!
pids+=($locker)
sleep 1
bc_yaml false | k apply --server-side -f - >/dev/null
killed=
# The backup runs in an init container: the pod is Pending with that container running.
dumping='[.items[] | select((.metadata.name | startswith("stash-backup-")) and
  any((.status.initContainerStatuses // [])[], (.status.containerStatuses // [])[]; .state.running != null))]'
if wait_for 100 "a backup pod with a running container" sh -c "kubectl get pods -n demo -o json | jq -e '$dumping | length > 0'"; then
  sleep 3
  pod=$(k get pods -n demo -o json | jq -r "$dumping | .[0].metadata.name")
  log "killing $pod (mid-dump: $(sql source "SHOW PROCESSLIST" | grep -c 'orders' || true) statement(s) waiting on the lock)"
  bc_yaml true | k apply --server-side -f - >/dev/null
  k delete pod "$pod" -n demo --wait=false >/dev/null
  killed=$pod
fi
kill "$locker" 2>/dev/null || true
if [[ -n "$killed" ]]; then
  if wait_for 120 "a Failed session" sh -c "kubectl get backupsessions -n demo -o json | jq -e '[.items[] | select(.status.phase == \"Failed\")] | length > 0'"; then
    pass "killed mid-dump: session $(sessions Failed | head -1) Failed ($(k get backupsessions -n demo -o json | jq -r '[.items[] | select(.status.phase == "Failed")][0].status.conditions // [] | map(.type + "=" + .status + ":" + (.reason // "")) | join(",")'))"
  else
    fail "killed mid-dump: no session Failed"
    show_sessions
  fi
else
  fail "killed mid-dump: no backup pod ran"
  show_sessions
fi
}

scenario_delete() {
# --- 5. deleting the configuration removes its children -----------------------------------
log "scenario 5: delete the configuration"
children() {
  k get cronjobs,jobs,backupsessions,serviceaccounts,roles,rolebindings -n demo -o json |
    jq -r '.items[] | select(any(.metadata.ownerReferences[]?; .kind == "BackupConfiguration" and .name == "every-minute")) | .kind + "/" + .metadata.name'
}
owned=$(children | sort | tr '\n' ' ')
k delete bc every-minute -n demo --wait=false >/dev/null
if wait_for 120 "the children to go" sh -c "[ -z \"\$(kubectl get cronjobs,backupsessions -n demo -o name)\" ]"; then
  left=$(children | tr '\n' ' ')
  if [[ -z "$left" ]]; then
    pass "deleting the configuration removed its children ($owned) in $(($(date +%s) - started_at)) s since start"
  else
    fail "deleting the configuration left $left"
  fi
else
  fail "deleting the configuration left $(k get cronjobs,jobs,backupsessions -n demo -o name | tr '\n' ' ')"
fi
}

for scenario in ${SCENARIOS:-backups paused_and_restore killed delete}; do
  "scenario_$scenario"
done
echo
echo "e2e-real summary ($(k version -o json | jq -r .serverVersion.gitVersion), $(($(date +%s) - started_at)) s):"
printf '  %s\n' "${results[@]}"
exit "$failed"
