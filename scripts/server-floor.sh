#!/usr/bin/env bash
# How close do the event-loop models come to the floor? Runs a textbook mio
# echo server (servers/examples/minimal_mio_echo.rs: one thread, nothing of
# the contract) and the given models in turn — interleaved: every server once
# per connection count, then again, REPEATS times — and reports server CPU µs
# per message (server pinned to CPU $SERVER_CPU, loadgen to $CLIENT_CPU), msg/s
# and p99, with medians and the ratio of each model to the floor.
#
# Server CPU is the server's (and its live children's: prefork) utime + stime from /proc over the whole
# loadgen run (no warm-up, so every completed message is counted; the connect
# phase adds well under 1 % at these rates, the same for every server).
#
#   scripts/server-floor.sh [REPEATS=3] [DURATION_SECS=5] [MODEL …]   (default models: reactor reactors tokio uring)
#
# A MODEL may carry options after commas: `prefork,--workers,128`. FLOOR=none
# leaves the mio floor out (then nothing is divided by it).
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS=${1:-3}
DURATION=${2:-5}
shift $(( $# > 2 ? 2 : $# ))
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(reactor reactors tokio uring)
if [ "${FLOOR:-mio}" = none ]; then SERVERS=("${MODELS[@]}"); else SERVERS=(minimal-mio "${MODELS[@]}"); fi
CONNECTIONS=${CONNECTIONS:-"100 1000"}
SIZE=${SIZE:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

cargo build --release --locked -q -p echo-servers -p loadgen --bins --example minimal_mio_echo
out=$(mktemp -d)
server=
stop_server() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true # its status is SIGTERM's
  fi
  server=
}
trap 'stop_server; rm -rf "$out"' EXIT

# utime + stime of a server and its children (prefork's workers), in clock ticks.
ticks() {
  local total=0 pid t
  for pid in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)

echo "servers on CPU $SERVER_CPU, loadgen on CPU $CLIENT_CPU; $SIZE B, ${DURATION}s per run, $REPEATS repeats, interleaved"
printf '%-14s %6s %4s %12s %10s %10s\n' server conns run "msg/s" "CPU µs/msg" "p99 µs"
for run in $(seq "$REPEATS"); do
  for conns in $CONNECTIONS; do
    for name in "${SERVERS[@]}"; do
      if [ "$name" = minimal-mio ]; then
        cmd=(target/release/examples/minimal_mio_echo 127.0.0.1:0)
      else
        IFS=, read -r -a spec <<<"$name"
        cmd=(target/release/echo-server "${spec[@]:0:1}" --addr 127.0.0.1:0 "${spec[@]:1}")
      fi
      taskset -c "$SERVER_CPU" "${cmd[@]}" >"$out/server.out" 2>/dev/null &
      server=$!
      for _ in $(seq 100); do grep -q listening "$out/server.out" && break; sleep 0.05; done
      addr=$(sed -n 's/^listening on //p' "$out/server.out")
      [ -n "$addr" ] || { echo "$name did not start" >&2; exit 1; }
      before=$(ticks "$server")
      taskset -c "$CLIENT_CPU" target/release/loadgen --addr "$addr" -c "$conns" -s "$SIZE" -d "${DURATION}s" \
        --warmup 0s --json "$out/$name-$conns-$run.json" >/dev/null 2>&1
      after=$(ticks "$server")
      stop_server
      echo "$(( after - before ))" >"$out/$name-$conns-$run.ticks"
      python3 - "$out" "$name" "$conns" "$run" "$hz" <<'PY'
import json, sys
out, name, conns, run, hz = sys.argv[1:6]
r = json.load(open(f"{out}/{name}-{conns}-{run}.json"))
ticks = int(open(f"{out}/{name}-{conns}-{run}.ticks").read())
ok = r["requests"]["ok"]
cpu_us = 1e6 * ticks / int(hz) / max(ok, 1)
print(f"{name:<14} {conns:>6} {run:>4} {r['throughput']['requests_per_sec']:12,.0f} {cpu_us:10.2f} {r['latency_us']['p99']:10,}")
PY
    done
  done
done

python3 - "$out" "$REPEATS" "$hz" "$CONNECTIONS" "${SERVERS[@]}" <<'PY'
import json, statistics, sys
out, repeats, hz, conns_list = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split()
names = sys.argv[5:]
med = statistics.median
print()
print(f"{'server':<14} {'conns':>6} {'msg/s':>12} {'CPU µs/msg':>11} {'× floor':>8} {'p99 µs':>9}")
for conns in conns_list:
    floor = None
    for name in names:
        rates, cpus, p99s, ratios = [], [], [], []
        for run in range(1, repeats + 1):
            r = json.load(open(f"{out}/{name}-{conns}-{run}.json"))
            ticks = int(open(f"{out}/{name}-{conns}-{run}.ticks").read())
            ok = max(r["requests"]["ok"], 1)
            cpu = 1e6 * ticks / hz / ok
            rates.append(r["throughput"]["requests_per_sec"]); cpus.append(cpu); p99s.append(r["latency_us"]["p99"])
            if name != "minimal-mio" and "minimal-mio" in names:
                f = json.load(open(f"{out}/minimal-mio-{conns}-{run}.json"))
                fticks = int(open(f"{out}/minimal-mio-{conns}-{run}.ticks").read())
                fcpu = 1e6 * fticks / hz / max(f["requests"]["ok"], 1)
                ratios.append(cpu / fcpu)
        ratio = f"{med(ratios):.2f}" if ratios else "1"
        print(f"{name:<14} {conns:>6} {med(rates):12,.0f} {med(cpus):11.2f} {ratio:>8} {med(p99s):9,.0f}"
              f"   (CPU {min(cpus):.2f}–{max(cpus):.2f})")
print("\n× floor: median over repeats of (model CPU/msg ÷ the floor's in the same round).")
PY
