#!/usr/bin/env bash
# The benchmark: builds the release binaries, then runs every server model ×
# the load matrix and writes results/<UTC timestamp>-<hostname>/ (results.json,
# README.md with the tables, SVG charts). All options go to `bench`:
#
#   scripts/bench.sh                 # the full default matrix (≈ 25 min on 2 CPUs)
#   scripts/bench.sh --quick         # a small matrix (< 3 min)
#   scripts/bench.sh --help          # every option
#   scripts/bench.sh report results/<run>   # re-render tables and charts
set -euo pipefail
cd "$(dirname "$0")/.."
#   scripts/bench.sh --transports tcp,unix   # every scenario over both transports
# The three binaries (echo-server, loadgen, bench) are built; cargo rebuilds
# nothing when nothing changed.
echo "bench.sh: building the release binaries (cargo build --release) …" >&2
cargo build --release --locked -q -p echo-servers -p loadgen -p echo-bench
ECHO_ARENA_COMMAND="scripts/bench.sh${*:+ $*}" exec target/release/bench "$@"
