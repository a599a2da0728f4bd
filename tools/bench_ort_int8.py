"""ONNX Runtime's int8 ResNet-50 beside ours: speed and accuracy on the same network, weights
and calibration photos. Run by tools/bench_int8_vs_ort.sh, which writes the inputs:

    bench_ort_int8.py DIR CALIBRATION_PHOTOS [EVAL_PHOTOS]

DIR holds encoder.onnx (+ .data) from `autocaption export --weights random --seed 0` and, for
the accuracy part, features.f32.safetensors and features.int8.safetensors from `autocaption
features` on EVAL_PHOTOS. The network is quantized with ONNX Runtime's own tool
(quantize_static: QDQ, per-channel int8 weights, uint8 activations, min-max calibration on
CALIBRATION_PHOTOS) into DIR/encoder.int8.onnx. Photos are preprocessed as the seed does
(PIL nearest resize to 224×224, BGR minus the caffe means), as `autocaption features` does.

Prints batch-1 ms and batch-8 images/s (best of REPEATS, default 10; THREADS intra-op
threads, default one per core), and for each encoder
the mean cosine similarity to our f32 features and the worst relative error (largest
|q − f| / |f| over the photos, L2 norms).

    python3 -m venv venv && venv/bin/pip install onnx onnxruntime "numpy<2" pillow
"""
import json
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from PIL import Image

MEANS = np.array([103.939, 116.779, 123.68], np.float32)
EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
REPEATS = int(os.environ.get("REPEATS", "10"))


def photos(folder):
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in EXTS and p.is_file())


def preprocess(path):
    img = Image.open(path).convert("RGB").resize((224, 224), Image.NEAREST)
    x = np.asarray(img, np.float32)[:, :, ::-1] - MEANS
    return np.ascontiguousarray(x)


def read_safetensors(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    (name, t), = [(k, v) for k, v in header.items()]
    a, b = t["data_offsets"]
    data = np.frombuffer(raw[8 + n + a:8 + n + b], np.float32).reshape(t["shape"])
    return json.loads(meta["names"]), data


class Reader(CalibrationDataReader):
    def __init__(self, name, inputs):
        self.items = iter([{name: x[None]} for x in inputs])

    def get_next(self):
        return next(self.items, None)


def best_of(fn):
    fn()
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    d = Path(sys.argv[1])
    calibration = [preprocess(p) for p in photos(sys.argv[2])]
    f32_path, q_path = d / "encoder.onnx", d / "encoder.int8.onnx"
    opts = ort.SessionOptions()
    # THREADS: as many as ours gets from RAYON_NUM_THREADS (0: ONNX Runtime's default, one
    # per physical core).
    opts.intra_op_num_threads = int(os.environ.get("THREADS", "0"))
    f32 = ort.InferenceSession(str(f32_path), opts, providers=["CPUExecutionProvider"])
    name = f32.get_inputs()[0].name
    if not q_path.exists():
        quantize_static(str(f32_path), str(q_path), Reader(name, calibration),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    q = ort.InferenceSession(str(q_path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch in (1, 8):
        x = rng.uniform(-120, 150, (batch, 224, 224, 3)).astype(np.float32)
        t = best_of(lambda: q.run(None, {name: x}))
        print(f"onnxruntime {ort.__version__} int8 batch {batch}: {t * 1e3:.1f} ms per batch, "
              f"{batch / t:.1f} images/s")
    if len(sys.argv) < 4:
        return
    names = [p.name for p in photos(sys.argv[3])]
    ours_names, ours_f32 = read_safetensors(d / "features.f32.safetensors")
    _, ours_int8 = read_safetensors(d / "features.int8.safetensors")
    order = [ours_names.index(n) for n in names]
    ours_f32, ours_int8 = ours_f32[order], ours_int8[order]
    inputs = np.stack([preprocess(p) for p in photos(sys.argv[3])])
    ort_f32 = np.concatenate([f32.run(None, {name: inputs[i:i + 8]})[0] for i in range(0, len(inputs), 8)])
    ort_int8 = np.concatenate([q.run(None, {name: inputs[i:i + 8]})[0] for i in range(0, len(inputs), 8)])

    def compare(label, a, ref):
        cos = (a * ref).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(ref, axis=1))
        rel = np.linalg.norm(a - ref, axis=1) / np.linalg.norm(ref, axis=1)
        print(f"{label:<34} mean cosine {cos.mean():.6f} (lowest {cos.min():.6f}), "
              f"worst relative error {rel.max():.4f} (mean {rel.mean():.4f})")

    print(f"accuracy against our f32 features, {len(names)} photos:")
    compare("onnxruntime f32 (input check)", ort_f32, ours_f32)
    compare("ours int8", ours_int8, ours_f32)
    compare("onnxruntime int8", ort_int8, ours_f32)


main()
