#!/usr/bin/env bash
# The highest Modbus → store → InfluxDB + alerts + raw telemetry rate watchpost sustains, with the peer workload's
# shape (holding registers whose values rotate on every read, a threshold at 900 on each) spread over several
# pymodbus server processes, because one pymodbus process tops out first. For each rate it prints what the servers
# served, watchpost's CPU and peak RSS, and whether every sink kept up (backlogs at the end, from /metrics).
#   scripts/ceiling.sh [SERVERS=4] [REGS_PER_SERVER=500] [POLL_MS="100 50 20 10"] [SECONDS=30]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-4}; REGS=${2:-500}; POLLS=${3:-"100 50 20 10"}; DUR=${4:-30}
PY=${WATCHPOST_TEST_PYTHON:-/var/cache/watchpost/venv/bin/python}
SRV=bench/modbus_server.py
cargo build -q --release --locked
B=${CARGO_TARGET_DIR:-target}/release/watchpost
source scripts/lib.sh
MQ=$(port); printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence false\nuser root\n' "$MQ" >"$T/mq.conf"
mosquitto -c "$T/mq.conf" >"$T/mq.log" 2>&1 & PIDS+=($!); waitp "$MQ"
VM=$(port); victoria-metrics -httpListenAddr=127.0.0.1:"$VM" -storageDataPath="$T/vm" >"$T/vm.log" 2>&1 & PIDS+=($!); waitp "$VM"
PORTS=()
for i in $(seq 1 "$S"); do
    p=$(port); "$PY" "$SRV" --host 127.0.0.1 --port "$p" --count "$REGS" --stats "$T/srv$i.csv" >"$T/srv$i.log" 2>&1 & PIDS+=($!)
    waitp "$p"; PORTS+=("$p")
done
echo "# $(nproc) cores; $S pymodbus servers × $REGS registers; threshold 900 on each; InfluxDB + alerts + raw telemetry"
for POLL in $POLLS; do
    rm -rf "$T/wp"; MP=$(port)
    python3 - "$T/wp.toml" "$T/wp" "$MQ" "$VM" "$MP" "$REGS" "$POLL" "${PORTS[@]}" <<'PY'
import sys
p, data, mq, vm, mp, regs, poll, *ports = sys.argv[1:]
s = f'''[gateway]
id = "ceiling"
data_dir = "{data}"
[influxdb]
url = "http://127.0.0.1:{vm}"
org = "b"
bucket = "b"
token = "t"
[mqtt]
url = "mqtt://127.0.0.1:{mq}"
[mqtt.telemetry]
mode = "raw"
[metrics]
listen = "127.0.0.1:{mp}"
'''
for j, port in enumerate(ports):
    s += f'[[modbus]]\nname = "plc{j}"\nurl = "tcp://127.0.0.1:{port}"\n'
for j in range(len(ports)):
    for i in range(int(regs)):
        s += f'[[sensor]]\nid = "p{j}r{i}"\ninterval = "{poll}ms"\nsource = {{ modbus = "plc{j}", table = "holding", address = {i} }}\nwarning = {{ high = 900 }}\n'
open(p, "w").write(s)
PY
    "$B" run --config "$T/wp.toml" >"$T/wp.log" 2>&1 & WP=$!
    sleep 5
    if ! kill -0 "$WP" 2>/dev/null; then echo "poll $POLL ms: watchpost exited:"; tail -5 "$T/wp.log"; continue; fi
    c0=$(awk '{print $14+$15}' /proc/$WP/stat); t0=$(date +%s); max=0
    for _ in $(seq 1 "$DUR"); do sleep 1; r=$(awk '/VmRSS/{print $2}' /proc/$WP/status); [ "$r" -gt "$max" ] && max=$r; done
    c1=$(awk '{print $14+$15}' /proc/$WP/stat); t1=$(date +%s)
    served=0; for i in $(seq 1 "$S"); do
        n=$(awk -F, -v a="$t0" -v b="$t1" '$1>a && $1<=b {s+=$3} END {print s+0}' "$T/srv$i.csv"); served=$((served + n)); done
    m=$(curl -s "127.0.0.1:$MP/metrics" || true)
    backlog() { grep "^watchpost_sink_backlog{sink=\"$1\"}" <<<"$m" | awk '{print $2}'; }
    kill "$WP"; wait "$WP" || true
    awk -v poll="$POLL" -v served="$served" -v dur="$((t1 - t0))" -v cpu="$((c1 - c0))" -v rss="$max" \
        -v bi="$(backlog influxdb)" -v bm="$(backlog mqtt)" -v bt="$(backlog telemetry)" 'BEGIN {
        printf "poll %4s ms: %7.0f readings/s served, watchpost CPU %5.1f %%, %.2f us/reading, peak RSS %.1f MiB; backlog at the end: influxdb %s, alerts %s, telemetry %s\n",
            poll, served/dur, cpu/dur, (cpu/100)/(served>0?served:1)*1e6, rss/1024, bi, bm, bt }'
done
