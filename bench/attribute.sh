#!/usr/bin/env bash
# Where the gateway workload's CPU goes, part by part: the same workload (a pymodbus server with REGS holding
# registers read every 100 ms, one server per process) run at the same time in several configurations, each
# watchpost with parts of its config removed, beside the floor (examples/poll_floor.rs: the bare tokio-modbus poll).
# The differences between the rows are what each part costs in the same run (absolute CPU moves 2x between runs
# and machines; differences within one run do not). Per thread: the runtime thread (sources, sinks), the ingest
# thread (judging, the store's commits) and tokio's blocking pool (the sinks' store reads and cursor saves).
#   bench/attribute.sh [SECONDS=40] [REGS=100]
# Env: WATCHPOST_BIN (default: the release build, built if missing), SRV_PY (python with pymodbus >= 3.10; default
# $WATCHPOST_TEST_PYTHON, else python3). Needs mosquitto and victoria-metrics.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-40}; REGS=${2:-100}
B=${WATCHPOST_BIN:-${CARGO_TARGET_DIR:-$(pwd)/target}/release/watchpost}
[ -x "$B" ] || cargo build --release --locked >/dev/null
B=$(readlink -f "$B")
cargo build --release --locked --example poll_floor >/dev/null 2>&1
FLOOR=${CARGO_TARGET_DIR:-$(pwd)/target}/release/examples/poll_floor
SRV_PY=${SRV_PY:-${WATCHPOST_TEST_PYTHON:-python3}}
. scripts/lib.sh

MQ=$(port); printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n' "$MQ" >"$T/mq.conf"
mosquitto -c "$T/mq.conf" >"$T/mq.log" 2>&1 & PIDS+=($!); waitp "$MQ"
VM=$(port); victoria-metrics -httpListenAddr=127.0.0.1:"$VM" -storageDataPath="$T/vm" >"$T/vm.log" 2>&1 & PIDS+=($!); waitp "$VM"

# name: what the config keeps. Alarms: the benchmark's `warning = { high = 900 }` on every register (10 % of the
# values cross it: a raise and a clear a second).
VARIANTS="store store+alarms store+alarms+mqtt store+alarms+influxdb full"
declare -A PID
server() { # name -> a pymodbus server for it, its port in MB
  MB=$(port)
  "$SRV_PY" bench/modbus_server.py --host 127.0.0.1 --port "$MB" --count "$REGS" --stats "$T/$1.csv" >"$T/$1.srv.log" 2>&1 &
  PIDS+=($!); waitp "$MB"
}
for v in $VARIANTS; do
  server "$v"
  {
    printf '[gateway]\nid = "attr-%s"\ndata_dir = "%s/%s-data"\n\n' "${v//+/-}" "$T" "$v"
    case "$v" in *influxdb*|full) printf '[influxdb]\nurl = "http://127.0.0.1:%s"\norg = "o"\nbucket = "b"\ntoken = "t"\n\n' "$VM" ;; esac
    case "$v" in *mqtt*|full) printf '[mqtt]\nurl = "mqtt://127.0.0.1:%s"\n\n' "$MQ" ;; esac
    printf '[[modbus]]\nname = "plc"\nurl = "tcp://127.0.0.1:%s"\n' "$MB"
    for i in $(seq 0 $((REGS - 1))); do
      printf '\n[[sensor]]\nid = "r%d"\ninterval = "100ms"\nsource = { modbus = "plc", unit = 1, table = "holding", address = %d, type = "u16" }\n' "$i" "$i"
      case "$v" in *alarms*|full) printf 'warning = { high = 900 }\n' ;; esac
    done
  } >"$T/$v.toml"
  "$B" check-config "$T/$v.toml" >/dev/null
  "$B" run --config "$T/$v.toml" >"$T/$v.log" 2>&1 & PID[$v]=$!; PIDS+=($!)
done
server floor
"$FLOOR" "127.0.0.1:$MB" "$REGS" 100 >"$T/floor.log" 2>&1 & PID[floor]=$!; PIDS+=($!)

sleep 10
# Per thread: variant, thread kind, CPU ns (schedstat), voluntary + involuntary context switches.
snap() {
  for v in floor $VARIANTS; do
    for t in /proc/"${PID[$v]}"/task/*; do
      local kind; kind=$(cat "$t/comm")
      case "$kind" in watchpost-inges*) kind=ingest ;; tokio-rt-worker) kind=pool ;; *) kind=runtime ;; esac
      echo "$v $kind ${t##*/} $(cut -d' ' -f1 "$t/schedstat") $(awk '/ctxt_switches/{s+=$2} END{print s}' "$t/status")"
    done
  done
}
snap >"$T/a"; t0=$(date +%s); sleep "$SECS"; snap >"$T/b"; t1=$(date +%s)
python3 - "$T" "$t0" "$t1" floor $VARIANTS <<'EOF'
import sys
T, t0, t1, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
secs = t1 - t0
a = {(l.split()[0], l.split()[2]): l.split() for l in open(f"{T}/a")}
cpu, cs = {}, {}
for l in open(f"{T}/b"):
    v, kind, tid, ns, sw = l.split()
    _, _, _, ns0, sw0 = a.get((v, tid), (v, kind, tid, 0, 0))
    cpu.setdefault(v, {}).setdefault(kind, 0.0)
    cs.setdefault(v, {}).setdefault(kind, 0.0)
    cpu[v][kind] += (int(ns) - int(ns0)) / secs / 1e3
    cs[v][kind] += (int(sw) - int(sw0)) / secs
def served(v):
    rows = [l.strip().split(",") for l in open(f"{T}/{v}.csv") if l[0].isdigit()]
    n = sum(int(r[2]) for r in rows if t0 < int(r[0]) <= t1)
    return max(n / secs, 1)
print(f"{'':24} {'µs CPU/s':>9} {'µs/reading':>10} {'cs/s':>6}   runtime / ingest / pool µs/s (cs/s)")
total = {}
for v in names:
    t = sum(cpu[v].values()); total[v] = t
    parts = " / ".join(f"{cpu[v].get(k, 0):.0f} ({cs[v].get(k, 0):.1f})" for k in ("runtime", "ingest", "pool"))
    print(f"{v:24} {t:9.0f} {t / served(v):10.2f} {sum(cs[v].values()):6.1f}   {parts}")
print()
steps = [("the store (judging, commits)", "floor", "store"), ("alarms (raise + clear a second)", "store", "store+alarms"),
         ("MQTT alerts", "store+alarms", "store+alarms+mqtt"), ("InfluxDB writes", "store+alarms", "store+alarms+influxdb"),
         ("both sinks together", "store+alarms", "full")]
for what, x, y in steps:
    d = total[y] - total[x]
    print(f"{what:34} {d:+7.0f} µs CPU/s  ({100 * d / total['full']:+.0f} % of full)")
print(f"{'full ÷ floor':34} {total['full'] / total['floor']:7.2f}")
EOF
