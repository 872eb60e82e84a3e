#!/usr/bin/env bash
# Is loadgen as cheap as the simplest possible client? Runs the minimal
# client (loadgen/examples/minimal_client.rs) and loadgen in turn — A B A B …,
# REPEATS times each — against one tokio echo server. Server on CPU
# $SERVER_CPU, client on CPU $CLIENT_CPU; both clients on one event-loop
# thread. Prints every run and the medians; the figure that matters is the
# median ratio loadgen / minimal (target: ≥ 0.97), and the same for the
# client CPU per message, the less noisy reading of the instrument's cost.
#
#   scripts/loadgen-overhead.sh [REPEATS=5] [DURATION_SECS=10]
set -euo pipefail
cd "$(dirname "$0")/.."

REPEATS=${1:-5}
DURATION=${2:-10}
WARMUP=2
CONNECTIONS=${CONNECTIONS:-100}
SIZE=${SIZE:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

cargo build --release --locked -q -p echo-servers -p loadgen --bins --example minimal_client
out=$(mktemp -d)
taskset -c "$SERVER_CPU" target/release/echo-server tokio --addr 127.0.0.1:0 --workers 1 >"$out/server.out" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out/server.out" && break; sleep 0.05; done
addr=$(sed -n 's/^listening on //p' "$out/server.out")
[ -n "$addr" ] || { echo "server did not start" >&2; exit 1; }
echo "server: echo-server tokio --workers 1 on CPU $SERVER_CPU at $addr; clients on CPU $CLIENT_CPU"
echo "load: $CONNECTIONS connections, $SIZE B, ${WARMUP}s warm-up + ${DURATION}s, $REPEATS runs each, interleaved"

printf '%-8s %-3s %14s %16s\n' client run "msg/s" "client CPU µs/msg"
for i in $(seq "$REPEATS"); do
  taskset -c "$CLIENT_CPU" target/release/examples/minimal_client "$addr" "$CONNECTIONS" "$SIZE" "$DURATION" "$WARMUP" >"$out/minimal-$i.json"
  taskset -c "$CLIENT_CPU" target/release/loadgen --addr "$addr" -c "$CONNECTIONS" -s "$SIZE" -d "${DURATION}s" \
    --warmup "${WARMUP}s" --threads 1 --json "$out/loadgen-$i.json" >/dev/null 2>&1
  python3 - "$out" "$i" <<'PY'
import json, sys
out, i = sys.argv[1], sys.argv[2]
m = json.load(open(f"{out}/minimal-{i}.json"))
l = json.load(open(f"{out}/loadgen-{i}.json"))
l_rate = l["throughput"]["requests_per_sec"]
l_cpu = l["client_cpu"]["user_secs"] + l["client_cpu"]["sys_secs"]
l_done = l["requests"]["ok"]
print(f"{'minimal':<8} {i:<3} {m['requests_per_sec']:14.0f} {1e6 * m['cpu_secs'] / m['completed']:16.2f}")
print(f"{'loadgen':<8} {i:<3} {l_rate:14.0f} {1e6 * l_cpu / l_done:16.2f}")
PY
done

python3 - "$out" "$REPEATS" <<'PY'
import json, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
m = [json.load(open(f"{out}/minimal-{i}.json")) for i in range(1, n + 1)]
l = [json.load(open(f"{out}/loadgen-{i}.json")) for i in range(1, n + 1)]
m_rate = [r["requests_per_sec"] for r in m]
l_rate = [r["throughput"]["requests_per_sec"] for r in l]
m_cpu = [1e6 * r["cpu_secs"] / r["completed"] for r in m]
l_cpu = [1e6 * (r["client_cpu"]["user_secs"] + r["client_cpu"]["sys_secs"]) / r["requests"]["ok"] for r in l]
ratios = [b / a for a, b in zip(m_rate, l_rate)]
med = statistics.median
print()
print(f"minimal: median {med(m_rate):,.0f} msg/s (min {min(m_rate):,.0f}, max {max(m_rate):,.0f}); {med(m_cpu):.2f} µs CPU/msg")
print(f"loadgen: median {med(l_rate):,.0f} msg/s (min {min(l_rate):,.0f}, max {max(l_rate):,.0f}); {med(l_cpu):.2f} µs CPU/msg")
print(f"loadgen / minimal throughput, per pair: " + ", ".join(f"{r:.3f}" for r in ratios))
print(f"median ratio {med(ratios):.3f} (target ≥ 0.97)")
cpu_ratios = [b / a for a, b in zip(m_cpu, l_cpu)]
print(f"loadgen / minimal client CPU per message, per pair: " + ", ".join(f"{r:.3f}" for r in cpu_ratios))
print(f"median ratio {med(cpu_ratios):.3f} (the instrument's own cost: what the throughput ratio pays when the client is the bottleneck)")
PY
