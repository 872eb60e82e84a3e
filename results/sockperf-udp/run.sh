#!/usr/bin/env bash
# sockperf ping-pong against sockperf server, and loadgen (1 flow) against
# echo-server iterative over UDP: 64 B, 5 s each, interleaved, 3 rounds;
# servers on CPU 0, clients on CPU 1.
set -u
# The release binaries of the checkout this folder is in (results/sockperf-udp/).
BIN=$(cd "$(dirname "$0")/../.." && pwd)/target/release
taskset -c 0 sockperf server -i 127.0.0.1 -p 11111 > sp-server.log 2>&1 &
sp=$!
taskset -c 0 $BIN/echo-server iterative --addr udp:127.0.0.1:0 > es.out 2> es.err &
es=$!
sleep 1
addr=$(sed -n 's/^listening on //p' es.out)
for i in 1 2 3; do
  taskset -c 1 sockperf ping-pong -i 127.0.0.1 -p 11111 -m 64 -t 5 --full-rtt > sp-$i.txt 2>&1
  taskset -c 1 $BIN/loadgen --addr $addr -c 1 -s 64 -d 5s --warmup 1s --threads 1 --timeout 100ms --json lg-$i.json > lg-$i.txt 2>&1
done
kill $sp $es; wait
