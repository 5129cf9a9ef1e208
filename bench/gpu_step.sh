# Sourced by the prepared GPU sessions (bench/run_gpu.sh, bench/gpu_issue14.sh): one step of a session.
# step SECONDS command...: run it with a time limit, everything printed into "$log" as well.
step() {
    local limit=$1; shift
    echo "\$ $*  (limit ${limit}s, $(date +%T))" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    echo "[exit ${PIPESTATUS[0]}]" | tee -a "$log"
}
