#!/usr/bin/env bash
# Our int8 ResNet-50 beside ONNX Runtime's on the same network (seeded random weights,
# Keras layout), the same calibration photos and this machine, ROUNDS times interleaved so
# both see the same load; then accuracy against our f32 features on every photo of PHOTOS.
#   PYTHON=venv/bin/python tools/bench_int8_vs_ort.sh PHOTOS [ROUNDS] [CALIBRATION_COUNT]
# PHOTOS: a folder of photos (e.g. $AUTOCAPTION_SHARED/data/flickr8k/images); the first
# CALIBRATION_COUNT (default 8) by name calibrate both. PYTHON needs onnx, onnxruntime,
# numpy and pillow (see tools/bench_ort_int8.py). Work files go to $OUT (default a temp dir).
# THREADS=n runs both on n threads (default: each its own default, one per core).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
photos=$(realpath "$1")
rounds=${2:-3}
count=${3:-8}
out=${OUT:-$(mktemp -d)}
cargo build --release -q
ac=target/release/autocaption
mkdir -p "$out/cal"
find "$photos" -maxdepth 1 -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) \
    | sort | head -n "$count" | while read -r f; do ln -sf "$f" "$out/cal/"; done
"$ac" export -q --force --weights random --seed 0 -o "$out"
rm -f "$out/encoder.int8.onnx"
# Fresh features: `features` would keep the rows of an existing file (made by another build).
rm -f "$out"/features.*
"$ac" features -q --weights random --seed 0 --images "$photos" -o "$out/features.f32.safetensors"
"$ac" features -q --weights random --seed 0 --images "$photos" -o "$out/features.int8.safetensors" \
    --precision int8 --calibrate "$out/cal"
if [ -n "${THREADS:-}" ]; then export RAYON_NUM_THREADS=$THREADS; fi
for i in $(seq "$rounds"); do
    echo "== round $i"
    "$ac" bench encode --precision int8 --calibrate "$out/cal" --repeats 10 | grep -E '^(bench|batch [18])'
    "$python" tools/bench_ort_int8.py "$out" "$out/cal" 2>/dev/null | grep -E '^onnxruntime'
done
echo "== accuracy"
REPEATS=1 "$python" tools/bench_ort_int8.py "$out" "$out/cal" "$photos" 2>/dev/null | grep -vE '^onnxruntime [0-9.]+ int8 batch'
