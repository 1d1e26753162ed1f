#!/usr/bin/env bash
# Soak: 10k readings/s (100 simulated sensors every 10 ms, alarms flowing) with InfluxDB (VictoriaMetrics) and MQTT
# (mosquitto) on, a time-series outage and a broker outage injected, for MINUTES (default 10). Prints RSS after the
# first minute and at the end (budget: the end within 10 % of the first minute), CPU, and the final backlog.
#   scripts/soak.sh [MINUTES]      (needs what .ci/run installs; uses target/release/watchpost, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
MIN=${1:-10}
B=${WATCHPOST_BIN:-$(pwd)/target/release/watchpost}
[ -x "$B" ] || cargo build --release --locked >/dev/null
source scripts/lib.sh
MQ=$(port); printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence false\nuser root\n' "$MQ" >"$T/mq.conf"
VM=$(port)
start_mq() { mosquitto -c "$T/mq.conf" >>"$T/mq.log" 2>&1 & MQP=$!; PIDS+=($MQP); waitp "$MQ"; }
start_vm() { victoria-metrics -httpListenAddr=127.0.0.1:"$VM" -storageDataPath="$T/vm" >>"$T/vm.log" 2>&1 & VMP=$!; PIDS+=($VMP); waitp "$VM"; }
start_mq; start_vm
{
  printf '[gateway]\nid = "soak"\ndata_dir = "%s/data"\n\n[buffer]\nmax_size = "256MiB"\n\n' "$T"
  printf '[influxdb]\nurl = "http://127.0.0.1:%s"\norg = "o"\nbucket = "b"\n\n[mqtt]\nurl = "mqtt://127.0.0.1:%s"\n' "$VM" "$MQ"
  for i in $(seq 0 99); do
    printf '\n[[sensor]]\nid = "s%02d"\ninterval = "10ms"\nsource = { simulated = "sine", offset = 50.0, amplitude = 40.0, period = "%ds", noise = 0.5 }\nwarning = { high = 85.0 }\ncritical = { high = 88.0 }\ndeadband = 1.0\n' "$i" $((20 + i))
  done
} >"$T/w.toml"
"$B" check-config "$T/w.toml" >/dev/null
"$B" run --config "$T/w.toml" 2>"$T/wp.log" & WP=$!; PIDS+=($WP)
rss() { awk '/VmRSS/{print $2}' /proc/"$WP"/status; }
cpu() { awk '{print $14+$15}' /proc/"$WP"/stat; }
sleep 60; R1=$(rss); C1=$(cpu); echo "after 1 min: RSS ${R1} kB"
END=$(( $(date +%s) + (MIN - 1) * 60 ))
half=$(( (MIN - 1) * 60 / 3 ))
sleep "$half"; kill "$VMP"; wait "$VMP" 2>/dev/null || true; echo "time-series server down"; sleep 60; start_vm; echo "time-series server back"
kill "$MQP"; wait "$MQP" 2>/dev/null || true; echo "broker down"; sleep 60; start_mq; echo "broker back"
while [ "$(date +%s)" -lt "$END" ]; do sleep 5; done
R2=$(rss); C2=$(cpu)
echo "after ${MIN} min: RSS ${R2} kB ($(( (R2 - R1) * 100 / R1 )) % vs minute 1); CPU $(( (C2 - C1) / ((MIN - 1) * 60) )) % of a core"
"$B" buffer status --config "$T/w.toml" | grep -E "readings held|dropped|sink"
