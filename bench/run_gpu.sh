#!/usr/bin/env bash
# One prepared session on a lent CUDA machine: correctness and kernel choice
# (check_cuda.py), the speed benchmark, a CUDA training run through the CLI
# that is then generated from, and the book's runs. Every step has its own
# time limit so that one slow step cannot eat the others' time.
#
#   bench/run_gpu.sh OUTDIR      (repo root; RNNLAB_CORPUS_DIR must hold timemachine.txt)
#
# Writes OUTDIR/gpu_log.txt (everything printed) and OUTDIR/gpu_run.tar (the
# CUDA-trained run, to load on a CPU-only machine).
set -u -o pipefail
out=${1:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 RNNLAB_HOME=${RNNLAB_HOME:-/tmp/rnnlab-gpu}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}  # DEVICE=cpu: a dry run of this script on a machine without a GPU
log="$out/gpu_log.txt"
runs="$RNNLAB_HOME/runs"
. "$(dirname "$0")/gpu_step.sh"  # step SECONDS command...
step 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
step 10 "$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
step 100 "$py" bench/check_cuda.py --rounds 20
step 170 "$py" bench/bench_speed.py --device "$device" --rounds 5 --epochs 2 --check-epochs 3 --gen-tokens 300
step 60 "$py" -m tui.cli train --corpus timemachine --model gru --epochs 40 --device "$device" \
    --runs-dir "$runs" --sample-every 20
run=$(ls "$runs" | head -n 1)
step 20 "$py" -m tui.cli generate "$runs/$run" --prefix "time traveller" --alpha 2 -n 120 --seed 1
step 20 "$py" -m tui.cli runs --runs-dir "$runs"
[ -n "$run" ] && tar -C "$runs" -cf "$out/gpu_run.tar" "$run"
step 110 "$py" bench/reproduce_d2l.py --device "$device"
echo "done $(date +%T)" | tee -a "$log"
