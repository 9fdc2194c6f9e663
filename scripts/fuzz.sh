#!/usr/bin/env bash
# Runs the cargo-fuzz targets for a given time each.
#
#   scripts/fuzz.sh TARGET SECONDS   # one target
#   scripts/fuzz.sh all SECONDS      # every target, one after the other
#   scripts/fuzz.sh list             # the targets
#
# Targets: decode, roundtrip (mqtt-codec/fuzz); broker_streams, config_yaml, password_file
# (amqtt-broker/fuzz). Works on stable through RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly
# flags); needs `cargo install cargo-fuzz`. The corpus grows in <crate>/fuzz/corpus/TARGET
# (not committed) from the committed seeds in <crate>/fuzz/seeds[/TARGET]; a crash is saved in
# <crate>/fuzz/artifacts/TARGET and makes the script fail: turn it into a unit test and fix it.
# Set FUZZ_JOBS=N to run N fuzzing processes per target, FUZZ_NICE=19 to run niced, FUZZ_ARGS
# for more libFuzzer flags.
set -euo pipefail
cd "$(dirname "$0")/.."

codec_targets=(decode roundtrip)
broker_targets=(broker_streams config_yaml password_file)

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

dir_of() {
  case " ${codec_targets[*]} " in *" $1 "*) echo mqtt-codec/fuzz; return ;; esac
  case " ${broker_targets[*]} " in *" $1 "*) echo amqtt-broker/fuzz; return ;; esac
  echo "unknown fuzz target: $1" >&2
  exit 2
}

run_one() {
  local target=$1 seconds=$2 dir inputs=() jobs=()
  dir=$(dir_of "$target")
  mkdir -p "$dir/corpus/$target"
  inputs+=("corpus/$target")
  if [ -d "$dir/seeds/$target" ]; then
    inputs+=("seeds/$target")
  elif [ "$dir" = mqtt-codec/fuzz ]; then
    inputs+=(seeds)
  fi
  # Inputs of the broker target are operation sequences: let them be long from the start.
  if [ "$target" = broker_streams ]; then
    jobs+=(-max_len=2048 -len_control=0)
  fi
  if [ -n "${FUZZ_JOBS:-}" ]; then
    jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
  fi
  echo "== $target for ${seconds}s ($dir)" >&2
  local start=$SECONDS
  (
    cd "$dir"
    RUSTC_BOOTSTRAP=1 nice -n "${FUZZ_NICE:-0}" cargo fuzz run "$target" "${inputs[@]}" -- \
      -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
      ${jobs[@]+"${jobs[@]}"} ${FUZZ_ARGS:-}
  )
  echo "== $target: done after $((SECONDS - start))s, no crash" >&2
}

[ $# -ge 1 ] || usage
case $1 in
  list) printf '%s\n' "${codec_targets[@]}" "${broker_targets[@]}" ;;
  all)
    [ $# -eq 2 ] || usage
    for t in "${codec_targets[@]}" "${broker_targets[@]}"; do run_one "$t" "$2"; done
    ;;
  -h | --help) usage ;;
  *)
    [ $# -eq 2 ] || usage
    run_one "$1" "$2"
    ;;
esac
