#!/usr/bin/env bash
# The benchmark: builds the release binaries, then runs every server model ×
# the load matrix and writes results/<UTC timestamp>-<hostname>/ (results.json,
# README.md with the tables, SVG charts). All options go to `bench`:
#
#   scripts/bench.sh                 # the full default matrix (≈ 22–30 min on 2 CPUs)
#   scripts/bench.sh --quick         # a small matrix (< 3 min)
#   scripts/bench.sh --help          # every option
#   scripts/bench.sh --transports tcp,unix   # every scenario over both transports
#   scripts/bench.sh report results/<run>   # re-render tables and charts (flags recomputed into results.json)
#   scripts/bench.sh floor           # event-loop models against a minimal mio echo (server CPU per message)
#   scripts/bench.sh overhead        # loadgen against the minimal client
set -euo pipefail
cd "$(dirname "$0")/.."
# The three binaries (echo-server, loadgen, bench) are built, and the example
# `floor` or `overhead` measures against; cargo rebuilds nothing when nothing changed.
echo "bench.sh: building the release binaries (cargo build --release; a minute or two the first time) …" >&2
built=$SECONDS
case "${1:-}" in
    floor) examples=(--example minimal_mio_echo) ;;
    overhead) examples=(--example minimal_client) ;;
    *) examples=() ;;
esac
cargo build --release --locked -q -p echo-servers -p loadgen -p echo-bench --bins ${examples[@]+"${examples[@]}"}
# Say what comes next: `report` renders a run already recorded, `--help`
# prints the options; anything else starts a run.
case "${1:-}" in
    report) next="rendering the report of ${2:-?}" ;;
    floor) next="measuring the models against the floor" ;;
    overhead) next="measuring loadgen against the minimal client" ;;
    help | -h | --help | -V | --version) next="running bench $1" ;;
    *) next="starting the benchmark" ;;
esac
echo "bench.sh: built in $((SECONDS - built)) s; $next" >&2
ECHO_ARENA_COMMAND="scripts/bench.sh${*:+ $*}" exec target/release/bench "$@"
