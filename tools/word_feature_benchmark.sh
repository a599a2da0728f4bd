#!/usr/bin/env bash
# Caption quality on the real Flickr8k captions and splits without images: word-detector
# features (../shared/bench/word_features.py, needs numpy), then the loss-selected,
# constant-rate baseline, the CIDEr-selected runs and the wider model, each swept on dev (to
# choose the decoder) and evaluated on test with the decoder dev chose (to report).
# Usage: tools/word_feature_benchmark.sh SHARED_DIR OUT_DIR [AUTOCAPTION]
set -euo pipefail
shared=$(cd "${1:?the shared folder (with data/flickr8k and bench/)}" && pwd)
out=${2:?an output folder}
bin=${3:-autocaption}
python=${PYTHON:-python3}
mkdir -p "$out"
cd "$out"
[ -f wf.safetensors ] || "$python" "$shared/bench/word_features.py" "$shared/data/flickr8k" wf.safetensors
[ -d prep ] || "$bin" prepare "$shared/data/flickr8k" --out prep -q

train() { # NAME ARGS...
    local name=$1
    shift
    [ -f "$name/weights.safetensors" ] && return
    local t0=$SECONDS
    "$bin" train --data prep --features wf.safetensors --out "$name" --force "$@"
    echo "$name: trained in $((SECONDS - t0)) s" | tee -a times.txt
}
train baseline --epochs 30 --patience 3 --select loss
train plateau --epochs 30 --patience 4 --select cider --lr-schedule plateau --lr-patience 1
train cosine --epochs 18 --patience 0 --select cider --lr-schedule cosine --warmup 1
# The recipe that reaches CIDEr-D 0.52: a wider image branch and merge LSTM, cosine, 16 epochs.
echo '{"image_dense": 512, "merge_lstm": 256}' > wide.json
train wide --epochs 16 --patience 0 --select cider --lr-schedule cosine --warmup 1 --model-config wide.json

for m in baseline plateau cosine wide; do
    echo "== $m, dev (choose the decoder)"
    "$bin" evaluate -q --model "$m" --data prep --split dev --beam 1,3,5 \
        --length-alpha 0,0.4,0.7,1,1.3 --out "$m/eval-dev" --force | tee "$m/dev-sweep.txt"
    # The row with the best CIDEr-D: "beam K αA" (or "greedy").
    best=$(sed -n 's/^Best CIDEr-D: \(.*\) ([0-9.]*)$/\1/p' "$m/dev-sweep.txt")
    case $best in
    greedy) args=(--beam 1) ;;
    "beam "*) k=${best#beam }; k=${k%% *}; a=${best##*α}; args=(--beam "$k" --length-alpha "$a") ;;
    *) echo "no best decoder in $m/dev-sweep.txt" >&2; exit 1 ;;
    esac
    echo "== $m, test with $best (report)"
    "$bin" evaluate -q --model "$m" --data prep --split test "${args[@]}" --out "$m/eval-test" --force
done
