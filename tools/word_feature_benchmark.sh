#!/usr/bin/env bash
# Caption quality on the real Flickr8k captions and splits without images: word-detector
# features (../shared/bench/word_features.py, needs numpy), then the loss-selected,
# constant-rate baseline and the CIDEr-selected runs, each evaluated on dev (to choose) and
# test (to report). Usage: tools/word_feature_benchmark.sh SHARED_DIR OUT_DIR [AUTOCAPTION]
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

for m in baseline plateau cosine; do
    echo "== $m, dev (choose the decoder)"
    "$bin" evaluate -q --model "$m" --data prep --split dev --beam 1,3,5,7 \
        --length-alpha 0,0.4,0.7,1,1.3 --out "$m/eval-dev" --force
    echo "== $m, test (report)"
    "$bin" evaluate -q --model "$m" --data prep --split test --beam 3 --out "$m/eval-test" --force
done
