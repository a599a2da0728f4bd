#!/usr/bin/env bash
# Our int8 ResNet-50 beside ONNX Runtime's on the same network (seeded random weights,
# Keras layout), the same calibration photos and this machine, ROUNDS times interleaved so
# both see the same load, each round's ratios and the verdict (in how many rounds ours was
# faster, the median ratio); then accuracy against our f32 features on every photo of PHOTOS.
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
done | tee "$out/rounds.txt"
# Per round, ours against ONNX Runtime's: at batch 1 its time over ours, at batch 8 our
# images/s over its (above 1: ours faster); then in how many rounds ours was faster, the
# median ratio and each side's best. A round either side spent on one core (another
# program's load) counts as it fell: the count and the median are the verdict, not the best.
echo "== speed, ours against onnxruntime (ratio above 1: ours faster)"
awk '
    /^== round/ { r++ }
    /^batch 1 / { o1[r] = $3 }
    /^batch 8 / { o8[r] = $3 }
    /int8 batch 1:/ { x1[r] = $(NF - 5) }
    /int8 batch 8:/ { x8[r] = $(NF - 1) }
    function median(a, n,   i, j, t) {
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        for (i = 1; i <= r; i++) {
            if (!(i in o1) || !(i in o8) || !(i in x1) || !(i in x8)) continue
            n++; a[n] = x1[i] / o1[i]; b[n] = o8[i] / x8[i]
            f1 += a[n] > 1; f8 += b[n] > 1
            if (!bo1 || o1[i] < bo1) bo1 = o1[i]; if (!bx1 || x1[i] < bx1) bx1 = x1[i]
            if (o8[i] > bo8) bo8 = o8[i]; if (x8[i] > bx8) bx8 = x8[i]
            printf "round %d: batch 1 %.1f / %.1f ms (%.3f), batch 8 %.1f / %.1f images/s (%.3f)\n", i, o1[i], x1[i], a[n], o8[i], x8[i], b[n]
        }
        if (!n) { print "no complete round"; exit 1 }
        printf "batch 1: ours faster in %d of %d rounds, median ratio %.3f; best %.1f ms, onnxruntime %.1f\n", f1, n, median(a, n), bo1, bx1
        printf "batch 8: ours faster in %d of %d rounds, median ratio %.3f; best %.1f images/s, onnxruntime %.1f\n", f8, n, median(b, n), bo8, bx8
    }' "$out/rounds.txt"
echo "== accuracy"
REPEATS=1 "$python" tools/bench_ort_int8.py "$out" "$out/cal" "$photos" 2>/dev/null | grep -vE '^onnxruntime [0-9.]+ int8 batch'
