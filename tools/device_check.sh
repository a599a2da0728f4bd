#!/usr/bin/env bash
# The C captioner of a model on x86-64 and, under qemu-user, on aarch64, armhf and riscv64:
# the same captions as `autocaption caption` from the model's held-out feature rows (dev and
# test splits) and from photos decoded by our decoder (PPM).
#   tools/device_check.sh MODEL_DIR PREPARED_DIR PHOTOS_DIR OUT [AUTOCAPTION]
# Needs numpy (PYTHON, default python3) to cut the held-out rows out of the feature file.
set -euo pipefail
model=${1:?a model directory}
prep=${2:?the prepared dataset the model was trained on}
photos=${3:?a folder of photos}
out=${4:?an output folder}
bin=${5:-autocaption}
python=${PYTHON:-python3}
beam=${BEAM:-3}
mkdir -p "$out"
features=$(sed -n 's/^ *"features": "\(.*\)",$/\1/p' "$model/config.json" | head -1)

# Held-out rows, in the order of the prepared set, and the engine's captions of them.
"$python" - "$prep" "$features" "$out" <<'EOF'
import json, struct, sys, numpy as np
prep, feats, out = sys.argv[1:]
held = [json.loads(l)["name"] for l in open(f"{prep}/captions.jsonl") if json.loads(l)["split"] in ("dev", "test")]
f = open(feats, "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); d = f.read()
names = json.loads(h["__metadata__"]["names"]); o = h["features"]["data_offsets"]
a = np.frombuffer(d[o[0]:o[1]], dtype="<f4").reshape(len(names), -1)
index = {n: i for i, n in enumerate(names)}
held = [n for n in held if n in index]
a[[index[n] for n in held]].tofile(f"{out}/held.f32")
open(f"{out}/held.txt", "w").write("\n".join(held) + "\n")
EOF
# The engine's captions of the same rows: caption --features on a file of just those rows
# would need writing one; instead caption every row and keep the held-out ones.
"$bin" caption -q --model "$model" --features "$features" --beam "$beam" |
    awk -F'\t' 'NR == FNR { keep[$1] = 1; next } ($1 in keep) { print $2 }' "$out/held.txt" - \
        > "$out/held.rust.txt"
# The photos: bench captioner writes their PPMs (our decoder) and checks x86-64 against the
# engine; its folder holds the generated captioner.
"$bin" bench captioner --model "$model" "$photos" --beam "$beam" --repeats 1 --weights embed \
    --keep "$out/c" | tail -3
ls "$out"/c/photo*.ppm | sort -V > "$out/ppms.txt"

run() { # NAME COMMAND... : captions of the held-out rows and the photos
    local name=$1
    shift
    "$@" -b "$beam" "$out/held.f32" | cut -f2 > "$out/held.$name.txt"
    xargs "$@" -b "$beam" < "$out/ppms.txt" | cut -f2 > "$out/photos.$name.txt"
}
run x86-64 "$out/c/captioner"
same=$(cmp -s "$out/held.x86-64.txt" "$out/held.rust.txt" && echo yes || echo NO)
printf '%-13s %d held-out rows, captions identical to the engine'"'"'s: %s\n' x86-64 \
    "$(wc -l < "$out/held.x86-64.txt")" "$same"
for pair in aarch64-linux-gnu-gcc:qemu-aarch64 arm-linux-gnueabihf-gcc:qemu-arm riscv64-linux-gnu-gcc:qemu-riscv64; do
    cc=${pair%%:*}
    qemu=${pair#*:}
    if ! command -v "$cc" >/dev/null || ! command -v "$qemu" >/dev/null; then
        echo "$qemu: skipped ($cc or $qemu missing)"
        continue
    fi
    (cd "$out/c" && "$cc" -std=c99 -O2 -ffp-contract=off -static -o "captioner-$qemu" \
        captioner.c captioner_encoder.c main.c -lm)
    start=$SECONDS
    run "$qemu" "$qemu" "$out/c/captioner-$qemu"
    same_held=$(cmp -s "$out/held.$qemu.txt" "$out/held.x86-64.txt" && echo yes || echo NO)
    same_photos=$(cmp -s "$out/photos.$qemu.txt" "$out/photos.x86-64.txt" && echo yes || echo NO)
    printf '%-13s held-out rows identical to x86-64: %s; photos identical: %s (%d s)\n' \
        "$qemu" "$same_held" "$same_photos" $((SECONDS - start))
done
