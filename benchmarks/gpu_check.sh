#!/usr/bin/env bash
# One prepared run of everything that needs a CUDA GPU: the GPU tests, then
# the benchmarks whose targets are GPU targets, each with --device cuda.
#
# Meant for a machine lent for a few minutes (the project's device tool):
# run from the repository root, it writes every report and log under $OUT
# (default ./gpu_out). A machine without skorch gets it from wheels in .whl/
# (pure-Python; fetch them beforehand where pip works:
#   python -m pip download --no-deps -d .whl skorch
# ), and the package runs from the checkout (PYTHONPATH), so nothing is
# built or downloaded on the GPU machine.
#
#   bash benchmarks/gpu_check.sh            # about 8 minutes on an H100
#   QUICK=0 bash benchmarks/gpu_check.sh    # full sizes
#
# The GPU targets these numbers answer (issue #23, item 4):
#   * JPEG files >= 0.5x the in-memory images/s (bench_pretrained: files/ours)
#   * compiled inference >= 0.95x a compiled loop (bench_pretrained --compiled)
#   * dictionary fit >= 20x scikit-learn (bench_dictionary: ratio column)
set -u -o pipefail
OUT=${OUT:-gpu_out}
QUICK=${QUICK:-1}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}

if ! "$PY" -c "import skorch" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile \
            --target /tmp/site .whl/*.whl || exit 1
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
    else
        echo "skorch is missing and .whl/ has no wheels (see the header)" >&2
        exit 1
    fi
fi

quick=()
if [ "$QUICK" = 1 ]; then
    quick=(--quick)
fi

step() {  # step NAME COMMAND...: run it, keep its log, go on if it fails
    local name=$1
    shift
    echo "=== $name: $*" | tee -a "$OUT/summary.txt"
    local start=$SECONDS
    "$@" >"$OUT/$name.txt" 2>&1
    local status=$?
    echo "=== $name: exit $status in $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
    tail -n 15 "$OUT/$name.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
    >"$OUT/summary.txt" 2>&1
"$PY" -c "import torch, torchvision; print('torch', torch.__version__, \
'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())" \
    | tee -a "$OUT/summary.txt"

step gpu_tests "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py
step pretrained "$PY" benchmarks/bench_pretrained.py --device cuda "${quick[@]}" \
    --backbones resnet18 resnet50 --save "$OUT/bench_pretrained-cuda.txt"
step compiled "$PY" benchmarks/bench_pretrained.py --device cuda --compiled \
    "${quick[@]}" --backbones resnet50 --save "$OUT/bench_pretrained-compiled-cuda.txt"
step dictionary "$PY" benchmarks/bench_dictionary.py --device cuda \
    "${quick[@]}" --repeats 3 --save "$OUT/bench_dictionary-cuda.txt"
step vae "$PY" benchmarks/bench_vae.py --device cuda "${quick[@]}" \
    --save "$OUT/bench_vae-cuda.txt"
