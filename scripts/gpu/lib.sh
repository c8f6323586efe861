# shellcheck shell=bash
# Shared by scripts/gpu_check.sh and scripts/gpu/*.sh (sourced, not run).
# Steps run under their own `timeout`, append to their log as they run (a
# step killed at its limit keeps what it wrote), and print one summary line
# to stdout and to the group's summary file.

# The wall-clock budget of this command: steps never get more than what is
# left of it minus a reserve, so that the command ends (and its logs come
# back) before the device tool's limit kills it.
gpu_budget_start() {
  GPU_BUDGET=${GPU_CHECK_BUDGET:-$1}
  GPU_T0=$SECONDS
}

# Seconds a step may take: its own limit, cut to the budget left minus 15 s.
gpu_limit() {
  local want=$1 left=$((GPU_BUDGET - (SECONDS - GPU_T0) - 15))
  ((left < want)) && want=$left
  ((want < 1)) && want=1
  echo "$want"
}

# gpu_step NAME LIMIT LOG DIGEST -- COMMAND...
#   DIGEST: gtest | sanitizer | pytest | tail: what to print to stdout when the step fails.
gpu_step() {
  local name=$1 limit digest=$4 log=$3 rc=0 t0=$SECONDS status first
  limit=$(gpu_limit "$2")
  touch "$log"
  first=$(($(wc -l <"$log") + 1))
  shift 5
  printf '\n===== %s (limit %ss, %s UTC)\n$ %s\n' "$name" "$limit" "$(date -u +%H:%M:%S)" "$*" >>"$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1 || rc=$?
  case $rc in
    0) status=PASS ;;
    124 | 137) status=TIMEOUT ;;
    *) status=FAIL ;;
  esac
  gpu_record "$name" "$status" "$rc" "$t0" "$log"
  if [ $rc != 0 ]; then
    tail -n "+$first" "$log" | case $digest in
      gtest) grep -E '^\[  FAILED  \]|Failure$|error:' | head -n 40 ;;
      sanitizer) grep -E '^\[  FAILED  \]|^========= [A-Z]|ERROR SUMMARY' | head -n 40 ;;
      pytest) grep -E '^(FAILED|ERROR) |^E   |[0-9]+ (passed|failed)' | head -n 60 ;;
      *) tail -n 25 ;;
    esac | sed 's/^/    | /'
  fi
  return $rc
}

# gpu_record NAME STATUS RC T0 LOG: the step's last log line and its STEP line.
gpu_record() {
  printf '===== %s: %s rc=%s %ss\n' "$1" "$2" "$3" "$((SECONDS - $4))" >>"$5"
  gpu_summary "$(printf 'STEP %-26s %-7s rc=%-3s %4ss  log=%s' "$1" "$2" "$3" "$((SECONDS - $4))" "${5##*/}")"
}

gpu_summary() {
  echo "$1"
  [ -n "${GPU_SUMMARY:-}" ] && echo "$1" >>"$GPU_SUMMARY"
  [ -n "${GPU_SUMMARY_ALSO:-}" ] && echo "$1" >>"$GPU_SUMMARY_ALSO"
  return 0
}
