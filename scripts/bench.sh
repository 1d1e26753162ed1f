#!/usr/bin/env bash
# Every benchmark figure of the README "Performance" table from one command: builds the release binary with the
# `bench` feature, starts mosquitto, VictoriaMetrics, aiosmtpd and a pymodbus server on free loopback ports, runs
# `watchpost bench` (in-process, --mqtt, --influxdb, --email, --modbus), the gateway workload (bench/peer_workload.sh
# when present) and prints the lines, with the machine they ran on.
#   scripts/bench.sh            (needs what .ci/run installs)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${WATCHPOST_TEST_PYTHON:-/var/cache/watchpost/venv/bin/python}
cargo build --release --locked --features bench >/dev/null
B=$(pwd)/target/release/watchpost
[ -n "${CARGO_TARGET_DIR:-}" ] && B=$CARGO_TARGET_DIR/release/watchpost
source scripts/lib.sh
MQ=$(port); printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence false\nuser root\n' "$MQ" >"$T/mq.conf"
mosquitto -c "$T/mq.conf" >"$T/mq.log" 2>&1 & PIDS+=($!); waitp "$MQ"
VM=$(port); victoria-metrics -httpListenAddr=127.0.0.1:"$VM" -storageDataPath="$T/vm" >"$T/vm.log" 2>&1 & PIDS+=($!); waitp "$VM"
SM=$(port); "$PY" tests/support/smtp_server.py --port "$SM" --out "$T/mails" >"$T/sm.ready" 2>"$T/sm.log" & PIDS+=($!); waitp "$SM"
MB=$(port); "$PY" bench/modbus_server.py --host 127.0.0.1 --port "$MB" --count 100 >"$T/mb.log" 2>&1 & PIDS+=($!); waitp "$MB"
echo "# $(uname -srm), $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); binary $(stat -c %s "$B") bytes"
"$B" bench
"$B" bench --mqtt "mqtt://127.0.0.1:$MQ"
"$B" bench --influxdb "http://127.0.0.1:$VM"
"$B" bench --email "smtp://127.0.0.1:$SM"
"$B" bench --modbus "tcp://127.0.0.1:$MB"
if [ -x bench/peer_workload.sh ] || [ -f bench/peer_workload.sh ]; then
    cargo build --release --locked >/dev/null
    SRV_PY="$PY" bash bench/peer_workload.sh "$B" 100 100 60 10 | grep -v '^ok$'
fi
