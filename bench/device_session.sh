#!/usr/bin/env bash
# Everything this project does on a lent device (an NVIDIA H200 with torch 2.11 preinstalled), in one
# session, run from the repository root:
#
#   OUT=/some/dir bash bench/device_session.sh                      # the GPU measurements (bench/results/h200*.json)
#   OUT=/some/dir STEPS="design" bash bench/device_session.sh             # a sweep's missing runs (none open now)
#
# The sweep steps, each its committed experiment relaunched over its committed runs under results/examples:
#   reproduce  experiment=reproduce                  (complete: 300 of 300)
#   e30        experiment=reproduce_e30              (complete: 100 of 100)
#   fmnist     experiment=reproduce_fashion_mnist    (complete: 100 of 100)
#   design     experiment=design                     (complete: 27 of 27)
#
# The reproduction steps train, in one cohort launch each, whatever of the sweep is not complete until
# the deadline, slim it, and pack only the runs that became complete into $OUT/<sweep>_new_<k>.tar
# (at most 150 slimmed runs, ~11 MB, per file). Back here: docs/gpu.md "The open sweeps on a lent GPU".
#
# Hydra is not on that machine: its wheels travel in .whl/ (git-ignored), made here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform any -d .whl \
#       hydra-core==1.3.8 omegaconf==2.3.1
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3   # no wheel on PyPI
# Every step is bounded by `timeout`, and the whole by DEADLINE seconds: a step that would start
# with less than its own budget left is skipped and says so.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device_out}
DEADLINE=${DEADLINE:-560}
mkdir -p "$OUT"
START=$(date +%s)
LOG="$OUT/log.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD

step() {  # step <seconds> <command...>; <seconds> = rest-N: all the time left but N seconds
    local budget=$1; shift
    local left=$((DEADLINE - ($(date +%s) - START)))
    case $budget in rest-*) budget=$((left - ${budget#rest-}));; esac
    if [ "$left" -lt "$budget" ] || [ "$budget" -lt 30 ]; then
        echo "== SKIPPED (only ${left}s left, needs ${budget}s and any step 30s): $*" | tee -a "$LOG"
        return
    fi
    echo "== $(date +%T) [$((left))s left] $*" | tee -a "$LOG"
    timeout "$budget" "$@" >>"$LOG" 2>&1
    echo "== rc=$? after $(( $(date +%s) - START ))s" | tee -a "$LOG"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee -a "$LOG"
python3 -c "import torch, torchvision, hydra; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'hydra', hydra.__version__, 'cpus', __import__('os').cpu_count())" | tee -a "$LOG"

STEPS=${STEPS:-"disk tests grid throughput precision agreement"}
has() { case " $STEPS " in *" $1 "*) return 0;; esac; return 1; }

complete() {  # complete <sweep dir> <marker>: the run directories below it that hold <marker>, sorted
    [ -d "$1" ] && (cd "$1" && for m in */"$2"; do [ -e "$m" ] && dirname "$m"; done) | sort
}
reproduce() {  # reproduce <sweep dir> <overrides...>: train the missing runs, slim, pack the new ones
    local dir=$1 name; shift
    name=$(basename "$dir")
    local before="$OUT/.${name}_before" new="$OUT/.${name}_new" fresh=""
    [ -d "$dir" ] || fresh=1
    complete "$dir" COMPLETE >"$before"
    step rest-${REPRO_RESERVE:-90} python3 -m sweep.train "$@" hydra/launcher=cohort \
        eval.iwae_image_chunk=100 eval.iwae_sample_chunk=500
    [ -d "$dir" ] || { echo "== $name: not begun"  | tee -a "$LOG"; return 0; }
    find "$dir" -name .lock -delete 2>/dev/null
    step 60 python3 -m sweep.slim "$dir"
    complete "$dir" SLIMMED | comm -13 "$before" - >"$new"
    echo "== $name: $(wc -l <"$new") runs newly complete and slimmed" | tee -a "$LOG"
    [ -s "$new" ] || { rm -f "$OUT/.${name}"_*; return 0; }
    # a sweep this session began also brings its own files (grid.json, multirun.yaml)
    [ -n "$fresh" ] && find "$dir" -maxdepth 1 -type f -printf '%f\n' >>"$new"
    split -l 150 -d "$new" "$OUT/.${name}_part_"
    for part in "$OUT/.${name}_part_"*; do
        tar -cf "$OUT/${name}_new_${part##*_}.tar" -C "$dir" --exclude=.lock -T "$part"
    done
    rm -f "$OUT/.${name}"_*
}
# The sweeps (conf/experiment/<name>.yaml), in the order the issues train them: each takes what time
# the ones before it left. The directory is the experiment's own (hydra.sweep.dir).
has reproduce && reproduce results/examples/reproduce experiment=reproduce
has e30 && reproduce results/examples/reproduce_e30 experiment=reproduce_e30
has fmnist && reproduce results/examples/reproduce_fashion_mnist experiment=reproduce_fashion_mnist
has design && reproduce results/examples/design experiment=design

# 0. how fast this machine's disk takes a fsync'ed write (checkpoints are written that way)
has disk && step 30 dd if=/dev/zero of=/tmp/ddtest bs=1M count=1024 conv=fsync
# 1. the CUDA-only tests (graph capture against the eager step)
has tests && step 90 python3 -m pytest -q -p no:cacheprovider tests/test_cohort.py -k cuda
# 2. the issue's launch, end to end: 100 runs of the paper grid, seed 0, 10 epochs, IWAE K=1000
has grid && step "${GRID_BUDGET:-300}" python3 -m bench.grid --timeout $(( ${GRID_BUDGET:-300} - 20 )) \
    --out "$OUT/h200_grid.json" -- experiment=paper seed=0 epochs=10 eval.iwae_k=1000 \
    hydra/launcher=cohort results_dir=/tmp/res
# 3. training throughput: stock loop, one model eager, one model graphed, 16 stacked x 4 slots
has throughput && step 150 python3 -m bench.throughput --device cuda --out "$OUT/h200.json"
# 4. IWAE NLL in float32 / TF32 / bf16 on runs the grid just trained
has precision && step 90 python3 -m bench.precision /tmp/res/sweeps/paper --runs 10 --images 1000 \
    --k 1000 --out "$OUT/h200_precision.json"
# 5. the same runs trained alone and stacked in cohorts of 4 seeds, 10 epochs each
AGREE="-m latent_dim=25 encoder=dense1 decoder=conv2 seed=0,1,2,3,4,5,6,7 epochs=10 eval.iwae_k=100 hydra/launcher=cohort results_dir=/tmp/agree"
if has agreement; then
    step 60 python3 -m sweep.train $AGREE engine.max_members=1 sweep_name=alone
    step 60 python3 -m sweep.train $AGREE engine.max_members=4 sweep_name=stacked
    step 30 python3 -m bench.agreement /tmp/agree/sweeps/alone /tmp/agree/sweeps/stacked \
        --out "$OUT/h200_agreement.json"
fi
grep -E "^== |passed|failed|bench.grid:|geomean|max \|stacked|copied|Error|error" "$LOG" | tail -40
