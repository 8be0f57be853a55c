#!/usr/bin/env bash
# Control-plane scale benchmark: N BackupConfigurations (each with its Repository, AppBinding
# and two Secrets) over NAMESPACES namespaces in `stash-testkit serve --controllers`, then
# `stash run --testkit-clock`. Reports time until all are Ready with their CronJobs, API
# requests, writes during REST seconds at rest, peak RSS and CPU of both processes.
#
#   bench/controlplane/run.sh                 # N=10000
#   N=1000 REST=10 bench/controlplane/run.sh  # quick
#   KEEP_LOGS=dir ...                          # keep server and operator logs (RUST_LOG applies)
#   PERF_SERVER=file ...                       # profile the server from operator start to end of
#                                              # rest (perf record --call-graph dwarf, PERF_FREQ Hz)
set -euo pipefail
N=${N:-10000}
NAMESPACES=${NAMESPACES:-100}
REST=${REST:-60}
TIMEOUT=${TIMEOUT:-300}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
if [[ -z "${SKIP_BUILD:-}" ]]; then
  (cd "$root" && cargo build --release -p stash-operator -p stash-testkit --bin stash --bin stash-testkit)
fi
stash=$target/release/stash
testkit=$target/release/stash-testkit
work=$(mktemp -d)
server_pid=""
time_pid=""
perf_pid=""
cleanup() {
  [[ -n "$perf_pid" ]] && kill -INT "$perf_pid" 2>/dev/null && wait "$perf_pid" 2>/dev/null || true
  [[ -n "$time_pid" ]] && kill "$time_pid" 2>/dev/null || true
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  if [[ -n "${KEEP_LOGS:-}" ]]; then mkdir -p "$KEEP_LOGS" && cp "$work"/*.log "$work"/*.err "$KEEP_LOGS"/ 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cpu_seconds() { # utime + stime of a process, in seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo "?"
}
counters() { curl -sf "$url/testkit/v1/requests"; }

"$testkit" serve --port 0 --kubeconfig "$work/kubeconfig" --controllers >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 600); do grep -q server: "$work/kubeconfig" 2>/dev/null && break; sleep 0.1; done
url=$(awk '/server:/ {print $2}' "$work/kubeconfig")
export KUBECONFIG=$work/kubeconfig
"$stash" crds | kubectl create -f - >/dev/null

start=$(date +%s.%N)
python3 "$here/load.py" "$url" "$N" "$NAMESPACES"
loaded=$(date +%s.%N)
printf 'loaded %d BackupConfigurations (%d objects) in %.1f s\n' "$N" $((N * 5)) "$(echo "$loaded - $start" | bc)"
before=$(counters)
server_cpu0=$(cpu_seconds "$server_pid")
if [[ -n "${PERF_SERVER:-}" ]]; then
  perf record -F "${PERF_FREQ:-250}" --call-graph dwarf,16384 -p "$server_pid" -o "$PERF_SERVER" \
    >"$work/perf.log" 2>&1 &
  perf_pid=$!
fi

# A fixed port, to read the operator's reconcile counters (stash_operator_reconciles_total).
metrics_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
reconciles() { curl -sf "http://127.0.0.1:$metrics_port/metrics" | awk '/^stash_operator_reconciles_total/ {printf "%s ", $0}'; }
/usr/bin/time -v "$stash" run --testkit-clock --metrics-addr "127.0.0.1:$metrics_port" --namespace stash \
  >"$work/operator.log" 2>"$work/operator.err" &
time_pid=$!
t0=$(date +%s.%N)
ready=0
while :; do
  sleep 1
  read -r ready cronjobs < <(python3 "$here/load.py" "$url" "$N" "$NAMESPACES" --ready)
  elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
  printf '  %6.1f s: %d Ready, %d CronJobs\n' "$elapsed" "$ready" "$cronjobs"
  if (( ready >= N )); then break; fi
  if (( $(echo "$elapsed > $TIMEOUT" | bc) )); then echo "TIMEOUT after $TIMEOUT s"; break; fi
  if ! kill -0 "$time_pid" 2>/dev/null; then echo "operator exited:"; tail -20 "$work/operator.err"; exit 1; fi
done
converged=$elapsed
mid=$(counters)
reconciles_mid=$(reconciles)
rv0=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["resourceVersion"])' "$mid")
sleep "$REST"
after=$(curl -sf "$url/testkit/v1/requests?since=$rv0")
reconciles_end=$(reconciles)
op_pid=$(cat "/proc/$time_pid/task/$time_pid/children" | awk '{print $1}')
op_cpu=$(cpu_seconds "$op_pid")
server_cpu=$(echo "$(cpu_seconds "$server_pid") - $server_cpu0" | bc)
if [[ -n "$perf_pid" ]]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; perf_pid=""; fi
kill "$op_pid"
wait "$time_pid" || true
time_pid=""
rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/operator.err")

python3 - "$before" "$mid" "$after" <<'PY'
import json, sys
before, mid, after = (json.loads(a) for a in sys.argv[1:])
def agents(c):
    return {a: sum(v.values()) for a, v in c["byAgent"].items() if a != "bench-controlplane"}
def delta(x, y):
    return {a: n - x.get(a, 0) for a, n in y.items() if n - x.get(a, 0)}
b, m, a = agents(before), agents(mid), agents(after)
print("API requests until converged (by client):", delta(b, m))
print("API requests during rest (by client):    ", delta(m, a))
ops = {k: v for k, v in mid["byAgent"].items() if k != "bench-controlplane"}
print("requests by verb until converged:", {a: {k: v - before["byAgent"].get(a, {}).get(k, 0) for k, v in vs.items()} for a, vs in ops.items()})
def by_resource(x, y):
    out = {}
    for a, vs in y.get("byResource", {}).items():
        if a in ("bench-controlplane", "kubectl", "kubectl-dispatcher"):
            continue
        for k, v in vs.items():
            n = v - x.get("byResource", {}).get(a, {}).get(k, 0)
            if n:
                out[k] = out.get(k, 0) + n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
print("operator requests by verb and resource until converged:", by_resource(before, mid))
print("operator requests by verb and resource during rest:    ", by_resource(mid, after))
PY
echo "---"
printf 'N=%d namespaces=%d\n' "$N" "$NAMESPACES"
printf 'converged (all Ready with CronJob): %s s (%d/%d Ready)\n' "$converged" "$ready" "$N"
python3 - "$REST" "$after" <<'PY'
import json, sys
writes = json.loads(sys.argv[2]).get("writesSince", {})
leases = writes.pop("coordination.k8s.io/leases", 0)
print(f"writes during {sys.argv[1]} s at rest: {sum(writes.values())} {writes or ''} "
      f"(plus {leases} leader-lease renewals)")
PY
printf 'operator reconciles until converged: %s\n' "${reconciles_mid:-?}"
printf 'operator reconciles at the end of rest: %s\n' "${reconciles_end:-?}"
printf 'operator peak RSS: %d MiB\n' $((rss_kib / 1024))
printf 'CPU from operator start to end of rest: operator %s s, server %s s\n' "$op_cpu" "$server_cpu"
