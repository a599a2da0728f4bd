#!/usr/bin/env bash
# Writes the starting corpus of every fuzz target into fuzz/seeds/TARGET/ from a tiny run of
# the real pipeline (synth → prepare → concepts → train → export) and the repository's
# fixtures. Run from the repository root: bash fuzz/make_seeds.sh
# Multi-file targets (prepared, model_dir) join their files with the line "--".
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
ac=target/release/autocaption
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
s=fuzz/seeds
rm -rf "$s"
mkdir -p "$s"/{flickr8k,flickr30k,coco,karpathy,csv_captions,prepared,tokenizer,model_dir,features,checkpoint,encoder_weights,onnx_compile,image,keras_model}

$ac -q synth --count 12 --size 32 --out "$w/synth"
$ac -q prepare "$w/synth" --out "$w/prep"
$ac -q concepts --data "$w/prep" --out "$w/f.safetensors" --epochs 1 --size 32
echo '{"embed_dim": 4, "text_lstm": 4, "text_dense": 4, "image_dense": 4, "merge_lstm": 4, "decoder_lstm": 4}' > "$w/tiny.json"
$ac -q train --data "$w/prep" --features "$w/f.safetensors" --out "$w/model" --epochs 1 \
    --model-config "$w/tiny.json"
$ac -q export --model "$w/model" --out "$w/onnx"

# Caption files: what synth wrote, and one small file of each other format.
cp "$(ls "$w"/synth/*.txt | head -1)" "$s/flickr8k/synth.txt"
printf '1000268201_693b08cb0e.jpg#0\tA child in a pink dress .\n1000268201_693b08cb0e.jpg#1\tA girl going into a wooden building .\r\nbad line\n' > "$s/flickr8k/quirks.txt"
printf 'image_name| comment_number| comment\n1000092795.jpg| 0| Two young guys with shaggy hair .\n1000092795.jpg| 1| Two friends enjoy time spent together .\n' > "$s/flickr30k/results.csv"
printf '{"images":[{"id":1,"file_name":"a.jpg"},{"id":2,"file_name":"b.jpg"}],"annotations":[{"image_id":1,"id":7,"caption":"A dog runs."},{"image_id":2,"id":8,"caption":"Two cats sleep"}]}\n' > "$s/coco/captions.json"
printf '{"images":[{"filename":"a.jpg","split":"train","sentences":[{"raw":"A dog runs.","tokens":["a","dog","runs"]}]},{"filename":"b.jpg","split":"test","sentences":[{"raw":"Cats."}]}],"dataset":"flickr8k"}\n' > "$s/karpathy/dataset.json"
printf '\x04image,caption\na.jpg,A dog runs .\na.jpg,"A dog, running"\nb.jpg,Two cats\n' > "$s/csv_captions/kaggle.txt"
printf 'a.jpg,A dog runs\nb.jpg,"quoted, caption"\n' > "$s/csv_captions/plain.csv"

# Prepared dataset and model directory: their files joined by "--" lines.
join() { local first=1; for f in "$@"; do [ $first = 1 ] || printf '\n--\n'; cat "$f"; first=0; done; }
join "$w/prep/manifest.json" "$w/prep/vocab.json" "$w/prep/captions.jsonl" > "$s/prepared/synth"
cp "$w/prep/vocab.json" "$s/tokenizer/vocab.json"
join "$w/model/config.json" "$w/model/vocab.json" "$w/model/weights.safetensors" > "$s/model_dir/tiny"
cp "$w/f.safetensors" "$s/features/concepts.safetensors"
ckpt=$(find "$w/model" -name '*.safetensors' ! -name weights.safetensors ! -name encoder.safetensors | head -1)
[ -n "$ckpt" ] && cp "$ckpt" "$s/checkpoint/$(basename "$ckpt")"
cp "$w/model/weights.safetensors" "$s/checkpoint/weights.safetensors"
cp "$w/f.encoder.safetensors" "$s/encoder_weights/concepts.safetensors"
cp fixtures/resnet/other.h5 "$s/encoder_weights/other.h5"
cp "$w/onnx/decoder.onnx" "$s/onnx_compile/decoder.onnx"
cp "$w/onnx/decoder_step.onnx" "$s/onnx_compile/decoder_step.onnx"
cp fixtures/keras_preprocess/images/rgb_37x23.png fixtures/keras_preprocess/images/smooth_130x90.jpg "$s/image/"
cp fixtures/keras_h5/tiny_seed.h5 fixtures/keras_h5/tokenizer.json "$s/keras_model/"
printf 'P6\n2 2\n255\n\x00\x00\x00\xff\xff\xff\x10\x20\x30\x40\x50\x60' > "$s/image/tiny.ppm"
du -sh "$s"/*
