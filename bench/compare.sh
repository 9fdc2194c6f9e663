#!/usr/bin/env bash
# bench/compare.sh: amqtt vs mosquitto vs rumqttd, side by side, on this machine, in one run.
#
# Builds the release binaries (amqtt, amqtt_bench), installs mosquitto from Debian when it is
# missing, uses rumqttd from PATH or bench/.cache (installing it there with `cargo install` when
# missing), then runs every scenario against every broker, alternating the brokers' order and
# repeating each at least 3 times. Each run gets a freshly started broker pinned to one core
# (BENCH_BROKER_CORE, default 0) while amqtt_bench runs pinned to another (BENCH_LOAD_CORE,
# default 1). Prints ONE markdown table of medians with min-max and ratios; raw JSON results
# stay in bench/results/<time>/.
#
# Usage: bench/compare.sh [--quick] [--reps N] [--brokers "amqtt mosquitto rumqttd"]
#                         [--with-rumqttd | --without-rumqttd]
# Environment (defaults: full / quick):
#   BENCH_DURATION   publishing time per run            10s / 2s
#   BENCH_DRAIN      longest wait for acks and the last    10s / 10s
#                    messages after publishing (subscribers stop after 1 s without one)
#   BENCH_CONNS      idle connections                 10000 / 2000
#   BENCH_HOLD       how long they are held              5s / 2s
#   BENCH_REPS       repetitions (at least 3 advised)       3 / 3
#   BENCH_RATE       latency scenario rate, msgs/s       5000 / 5000
#   BENCH_SCENARIOS  which to run (default "fanin fanout qos1 qos2 latency conns")
#   BENCH_BROKERS, BENCH_BROKER_CORE, BENCH_LOAD_CORE, BENCH_RUMQTTD_INSTALL_TIMEOUT (600 s),
#   BENCH_SKIP_BUILD=1 (use target/release as it is)
# Every run is bounded by `timeout`; the whole script by its scenario count.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR="$ROOT/bench"
CACHE="$BENCH_DIR/.cache"

QUICK=0
RUMQTTD_MODE=auto
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --reps) BENCH_REPS=$2; shift ;;
    --brokers) BENCH_BROKERS=$2; shift ;;
    --with-rumqttd) RUMQTTD_MODE=yes ;;
    --without-rumqttd) RUMQTTD_MODE=no ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$QUICK" = 1 ]; then
  : "${BENCH_DURATION:=2s}" "${BENCH_DRAIN:=10s}" "${BENCH_CONNS:=2000}" "${BENCH_HOLD:=2s}"
else
  : "${BENCH_DURATION:=10s}" "${BENCH_DRAIN:=10s}" "${BENCH_CONNS:=10000}" "${BENCH_HOLD:=5s}"
fi
: "${BENCH_REPS:=3}" "${BENCH_RATE:=5000}" "${BENCH_BROKER_CORE:=0}" "${BENCH_LOAD_CORE:=1}"
: "${BENCH_BROKERS:=amqtt mosquitto rumqttd}" "${BENCH_RUMQTTD_INSTALL_TIMEOUT:=600}"

log() { echo "compare.sh: $*" >&2; }
seconds() { # 10s, 500ms, 2m -> seconds (integer, rounded up)
  python3 -c 'import sys,math,re
m=re.fullmatch(r"([0-9.]+)(ms|s|m)?", sys.argv[1]); v=float(m.group(1)); u=m.group(2) or "s"
print(math.ceil(v/1000 if u=="ms" else v*60 if u=="m" else v))' "$1"
}
command -v python3 >/dev/null || { log "python3 is needed to summarise the results"; exit 1; }
command -v taskset >/dev/null || { log "taskset (util-linux) is needed to pin processes"; exit 1; }

# --- binaries ---------------------------------------------------------------------------
if [ "${BENCH_SKIP_BUILD:-0}" = 1 ] && [ -x "$ROOT/target/release/amqtt" ] && [ -x "$ROOT/target/release/amqtt_bench" ]; then
  log "BENCH_SKIP_BUILD=1: using the release binaries already in target/release"
else
  log "building release binaries (amqtt, amqtt_bench)"
  (cd "$ROOT" && cargo build --release -q -p amqtt-cli --bin amqtt --bin amqtt_bench)
fi
AMQTT="$ROOT/target/release/amqtt"
BENCH="$ROOT/target/release/amqtt_bench"

if ! command -v mosquitto >/dev/null && [ -x /usr/sbin/mosquitto ]; then PATH="$PATH:/usr/sbin"; fi
if [[ " $BENCH_BROKERS " == *" mosquitto "* ]] && ! command -v mosquitto >/dev/null; then
  log "installing mosquitto from Debian"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y mosquitto >/dev/null 2>&1 || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y mosquitto >/dev/null; }
  command -v mosquitto >/dev/null || PATH="$PATH:/usr/sbin"
fi

RUMQTTD=""
if [[ " $BENCH_BROKERS " == *" rumqttd "* ]] && [ "$RUMQTTD_MODE" != no ]; then
  if command -v rumqttd >/dev/null; then RUMQTTD=$(command -v rumqttd)
  elif [ -x "$CACHE/bin/rumqttd" ]; then RUMQTTD="$CACHE/bin/rumqttd"
  else
    log "installing rumqttd into bench/.cache (at most ${BENCH_RUMQTTD_INSTALL_TIMEOUT} s)"
    mkdir -p "$CACHE"
    # rumqttd 0.20.0's own lock file pins a `metrics` that newer compilers reject (E0521), so
    # a failed `--locked` install is retried with current dependency versions.
    if timeout "$BENCH_RUMQTTD_INSTALL_TIMEOUT" cargo install -q rumqttd --locked --root "$CACHE" >"$CACHE/install.log" 2>&1 \
      || timeout "$BENCH_RUMQTTD_INSTALL_TIMEOUT" cargo install -q rumqttd --root "$CACHE" >>"$CACHE/install.log" 2>&1; then
      RUMQTTD="$CACHE/bin/rumqttd"
    elif [ "$RUMQTTD_MODE" = yes ]; then
      log "rumqttd did not install (see bench/.cache/install.log)"; exit 1
    else
      log "rumqttd did not install in time: comparing without it (see bench/.cache/install.log)"
    fi
  fi
fi
BROKERS=()
for b in $BENCH_BROKERS; do
  case "$b" in
    rumqttd) [ -n "$RUMQTTD" ] && BROKERS+=(rumqttd) ;;
    mosquitto) command -v mosquitto >/dev/null && BROKERS+=(mosquitto) || log "no mosquitto: skipped" ;;
    amqtt) BROKERS+=(amqtt) ;;
    *) log "unknown broker $b"; exit 2 ;;
  esac
done
[ "${#BROKERS[@]}" -gt 0 ] || { log "no broker to compare"; exit 1; }

# 10,000 idle connections need as many descriptors in the broker and in the load tool.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((BENCH_CONNS + 100)) ]; then
  log "ulimit -n is $(ulimit -n): lowering BENCH_CONNS to $(( $(ulimit -n) - 100 ))"
  BENCH_CONNS=$(( $(ulimit -n) - 100 ))
fi

RESULTS="$BENCH_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS"
CLK_TCK=$(getconf CLK_TCK)
PORT_BASE=$(( 20000 + RANDOM % 20000 ))
declare -A PORT=([amqtt]=$PORT_BASE [mosquitto]=$((PORT_BASE + 1)) [rumqttd]=$((PORT_BASE + 2)))
BROKER_PID=""

start_broker() { # name
  local name=$1 port=${PORT[$1]} conf
  case "$name" in
    amqtt) conf="$RESULTS/amqtt.yaml"; sed "s/@PORT@/$port/" "$BENCH_DIR/amqtt.yaml" >"$conf"
      RUST_LOG=warn taskset -c "$BENCH_BROKER_CORE" "$AMQTT" -c "$conf" >>"$RESULTS/amqtt.log" 2>&1 & ;;
    mosquitto) conf="$RESULTS/mosquitto.conf"; sed "s/@PORT@/$port/" "$BENCH_DIR/mosquitto.conf" >"$conf"
      taskset -c "$BENCH_BROKER_CORE" mosquitto -c "$conf" >>"$RESULTS/mosquitto.log" 2>&1 & ;;
    rumqttd) conf="$RESULTS/rumqttd.toml"; sed "s/@PORT@/$port/" "$BENCH_DIR/rumqttd.toml" >"$conf"
      taskset -c "$BENCH_BROKER_CORE" "$RUMQTTD" -c "$conf" >>"$RESULTS/rumqttd.log" 2>&1 & ;;
  esac
  BROKER_PID=$!
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.05
  done
  log "$name did not start listening on $port (see $RESULTS/$name.log)"; return 1
}

stop_broker() {
  [ -n "$BROKER_PID" ] || return 0
  kill -TERM "$BROKER_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
}
trap stop_broker EXIT

cpu_seconds() { # pid -> utime + stime in seconds (fields 14 and 15 of /proc/PID/stat)
  python3 -c 'import sys
s=open(f"/proc/{sys.argv[1]}/stat").read(); f=s[s.rindex(")")+2:].split()
print((int(f[11])+int(f[12]))/int(sys.argv[2]))' "$1" "$CLK_TCK"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

DUR_S=$(seconds "$BENCH_DURATION"); DRAIN_S=$(seconds "$BENCH_DRAIN"); HOLD_S=$(seconds "$BENCH_HOLD")
RUN_TIMEOUT=$(( DUR_S + 3 * DRAIN_S + 30 ))
COMMON=(--duration "$BENCH_DURATION" --drain "$BENCH_DRAIN" --json --threads 1)

load() { # runs amqtt_bench pinned to the load core, bounded
  timeout "$RUN_TIMEOUT" taskset -c "$BENCH_LOAD_CORE" "$BENCH" "$@"
}

run_scenario() { # scenario broker rep -> writes $RESULTS/<scenario>.<broker>.<rep>.json
  local s=$1 b=$2 rep=$3 url="mqtt://127.0.0.1:${PORT[$2]}" out="$RESULTS/$1.$2.$3.json"
  local cpu0 cpu1 rss0 rss1 status=0
  start_broker "$b" || { echo '{"failed":"broker did not start"}' >"$out"; return 0; }
  case "$s" in
    fanin)
      cpu0=$(cpu_seconds "$BROKER_PID" || echo 0)
      load pubsub --url "$url" "${COMMON[@]}" --pubs 8 --subs 1 --qos 0 --size 64 \
        --topic 'bench/%i' --sub-topic 'bench/#' >"$out.raw" 2>"$out.err" || status=$?
      cpu1=$(cpu_seconds "$BROKER_PID" || echo 0)
      python3 - "$out.raw" "$cpu0" "$cpu1" >"$out" <<'EOF' || status=$?
import json, sys
r = json.load(open(sys.argv[1])); r["broker_cpu_s"] = float(sys.argv[3]) - float(sys.argv[2])
print(json.dumps(r))
EOF
      ;;
    fanout)
      load pubsub --url "$url" "${COMMON[@]}" --pubs 1 --subs 64 --qos 0 --size 64 \
        --topic bench/fanout --sub-topic bench/fanout >"$out" 2>"$out.err" || status=$? ;;
    qos1|qos2)
      load pubsub --url "$url" "${COMMON[@]}" --pubs 8 --subs 1 --qos "${s#qos}" --window 16 \
        --size 64 --topic 'bench/%i' --sub-topic 'bench/#' >"$out" 2>"$out.err" || status=$? ;;
    latency)
      load pubsub --url "$url" "${COMMON[@]}" --pubs 1 --subs 1 --qos 0 --size 64 \
        --rate "$BENCH_RATE" --topic bench/latency --sub-topic bench/latency >"$out" 2>"$out.err" || status=$? ;;
    conns)
      rss0=$(rss_kb "$BROKER_PID" || echo 0)
      timeout $(( HOLD_S + 120 )) taskset -c "$BENCH_LOAD_CORE" "$BENCH" conn --url "$url" --json \
        --threads 1 --clients "$BENCH_CONNS" --keep-alive 600 --duration "$BENCH_HOLD" \
        >"$out.raw" 2>"$out.err" &
      local bench_pid=$! waited=0
      # The load tool says "connected N of M" on stderr once every handshake is done; the
      # broker's RSS is sampled halfway through the hold that follows.
      until grep -q "connected" "$out.err" 2>/dev/null || ! kill -0 "$bench_pid" 2>/dev/null || [ $waited -ge 1200 ]; do
        sleep 0.1; waited=$((waited + 1))
      done
      sleep "$(python3 -c "print($HOLD_S / 2)")"
      rss1=$(rss_kb "$BROKER_PID" || echo 0)
      wait "$bench_pid" || status=$?
      python3 - "$out.raw" "$rss0" "$rss1" >"$out" <<'EOF' || status=$?
import json, sys
r = json.load(open(sys.argv[1])); r["broker_rss_kb"] = [int(sys.argv[2]), int(sys.argv[3])]
print(json.dumps(r))
EOF
      ;;
  esac
  if [ "$status" != 0 ]; then
    local why
    why=$(python3 -c 'import json,sys; e=json.load(open(sys.argv[1])).get("errors") or []; print(f"{len(e)} connection error(s), first: {e[0]}" if e else "")' "$out" 2>/dev/null || true)
    log "$s on $b (rep $rep): amqtt_bench exited $status: ${why:-$(tail -c 300 "$out.err" 2>/dev/null | tr '\n' ' ')}"
    [ -s "$out" ] || echo "{\"failed\":\"exit $status\"}" >"$out"
  fi
  stop_broker
}

read -r -a SCENARIOS <<<"${BENCH_SCENARIOS:-fanin fanout qos1 qos2 latency conns}"
log "brokers: ${BROKERS[*]}; broker on core $BENCH_BROKER_CORE, amqtt_bench on core $BENCH_LOAD_CORE"
log "duration $BENCH_DURATION, $BENCH_REPS repetitions, $BENCH_CONNS idle connections; results in $RESULTS"
for rep in $(seq "$BENCH_REPS"); do
  for s in "${SCENARIOS[@]}"; do
    # Alternate the brokers' order from one repetition to the next.
    order=("${BROKERS[@]}")
    shift_by=$(( (rep - 1) % ${#order[@]} ))
    order=("${order[@]:$shift_by}" "${order[@]:0:$shift_by}")
    for b in "${order[@]}"; do
      log "rep $rep/$BENCH_REPS: $s on $b"
      run_scenario "$s" "$b" "$rep"
    done
  done
done

MODE=$([ "$QUICK" = 1 ] && echo quick || echo full)
python3 "$BENCH_DIR/summarise.py" "$RESULTS" "${BROKERS[*]}" "$BENCH_REPS" \
  "$MODE" "$BENCH_DURATION" "$BENCH_CONNS" "$BENCH_RATE" "$BENCH_BROKER_CORE" "$BENCH_LOAD_CORE" \
  | tee "$RESULTS/table.md"
