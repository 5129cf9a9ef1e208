#!/usr/bin/env bash
# Issue 14's GPU session, prepared without a GPU (none was lent when it was written; not run yet).
# About 7 minutes on an H100/H200, every step under its own time limit:
#   1. the card, torch, cuDNN and bf16 support;
#   2. bench/check_cuda.py: CUDA against float64 CPU numbers, kernel choice, graph-replayed generation;
#   3. bench/bench_gpu_issue14.py: tokens/s of the book's four models (D2L's loop, rnnlab eager fp32,
#      --cuda-graphs, --precision bf16, both, fp16), of a 2-layer LSTM 1024 at batch 256, and of
#      generation with and without graphs, as markdown tables for bench/RESULTS.md;
#   4. the CLI end to end: rnnlab train with --cuda-graphs --precision bf16 on CUDA, then the run
#      generated from greedily with and without --cuda-graphs (the two texts must be equal).
#
#   bench/gpu_issue14.sh OUTDIR      (from the repo root)
#
# Writes OUTDIR/gpu14_log.txt (everything printed).
set -u -o pipefail
out=${1:-gpu14-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 RNNLAB_HOME=${RNNLAB_HOME:-/tmp/rnnlab-gpu14}
py=${PYTHON:-python3}
log="$out/gpu14_log.txt"
runs="$RNNLAB_HOME/runs"
. "$(dirname "$0")/gpu_step.sh"  # step SECONDS command...
step 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
step 20 "$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0), 'cuDNN',
torch.backends.cudnn.version(), 'bf16', torch.cuda.is_bf16_supported())"
step 90 "$py" bench/check_cuda.py --rounds 10
step 270 "$py" bench/bench_gpu_issue14.py --device cuda --epochs 6 --big-epochs 3
step 45 "$py" -m tui.cli train --corpus timemachine --model gru --epochs 20 --device cuda --cuda-graphs \
    --precision bf16 --sampler sequential --runs-dir "$runs" --sample-every 10
run=$(ls "$runs" | head -n 1)
for mode in eager graphs; do  # greedy text of the run, the per-token step eager and replayed
    flag=$([ "$mode" = graphs ] && echo --cuda-graphs)
    echo "\$ rnnlab generate $run --device cuda $flag --alpha inf -n 200" | tee -a "$log"
    timeout 20 "$py" -m tui.cli generate "$runs/$run" --device cuda $flag --prefix "time traveller" \
        --alpha inf -n 200 > "$out/$mode.txt" 2>> "$log"
    echo "[exit $?]" | tee -a "$log"
    tee -a "$log" < "$out/$mode.txt"
done
if cmp -s "$out/eager.txt" "$out/graphs.txt"; then echo "generate: same text with --cuda-graphs" | tee -a "$log"
else echo "generate: DIFFERENT text with --cuda-graphs" | tee -a "$log"; fi
echo "done $(date +%T)" | tee -a "$log"
