#!/usr/bin/env bash
# Interleaves `autocaption bench encode` and ONNX Runtime on the same ResNet-50, ROUNDS times,
# so that both see the same load on a shared machine.
#   PYTHON=venv/bin/python tools/bench_encode_vs_ort.sh [ROUNDS]
# PYTHON needs onnxruntime, tensorflow-cpu 2.15 and tf2onnx (see bench_ort_resnet50.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
rounds=${1:-3}
cargo build --release -q
for i in $(seq "$rounds"); do
    echo "== round $i"
    target/release/autocaption bench encode --repeats 15 | grep -E '^batch [18]'
    echo "-- onnxruntime"
    "$python" tools/bench_ort_resnet50.py 2>/dev/null | grep -E '^onnxruntime'
done
