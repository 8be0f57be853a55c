#!/usr/bin/env bash
# Data-path benchmark: dump alone vs Stash's pipeline vs ours (backup), plain `mysql < file`
# vs `restic dump | mysql` vs ours (restore), on a deterministic reference database.
#   BENCH_ROWS=25000 BENCH_ROUNDS=3 bench/datapath/run.sh     # quick run
#   bench/datapath/run.sh                                     # full size: 8 x 250,000 rows
# Needs mariadb-server, mariadb-client and restic (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo test --release -p stash-operator --test datapath_bench -- --ignored --nocapture --test-threads=1
