"""Checks models written by `autocaption export` in ONNX Runtime against our engine.

Usage: check_onnx_export.py DIR. DIR holds decoder.onnx, decoder_step.onnx, encoder.onnx
and, as raw little-endian float32, the engine's inputs and outputs written by
crates/export/tests/export.rs: tokens.bin [2, T], features.bin [2, F], probs_all.bin
[2, T, V] (next-word probabilities at every position), images.bin [2, S, S, 3] and
encoded.bin [2, C]. Prints the largest differences; exits 1 if one exceeds 1e-5.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

TOL = 1e-5
d = Path(sys.argv[1])
opts = ort.SessionOptions()
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL


def session(name):
    return ort.InferenceSession(str(d / name), opts, providers=["CPUExecutionProvider"])


dec = session("decoder.onnx")
n_tokens = dec.get_inputs()[0].shape[1]
n_feat = dec.get_inputs()[1].shape[1]
tokens = np.fromfile(d / "tokens.bin", dtype="<f4").reshape(2, n_tokens)
feats = np.fromfile(d / "features.bin", dtype="<f4").reshape(2, n_feat)
probs_all = np.fromfile(d / "probs_all.bin", dtype="<f4").reshape(2, n_tokens, -1)
(probs,) = dec.run(None, {"embedding_input": tokens, "dense_input": feats})
report = {"decoder_vs_engine": float(np.abs(probs - probs_all[:, -1]).max())}

# The step model, fed the same tokens one by one from zero states, gives every position.
step = session("decoder_step.onnx")
states = {i.name: np.zeros((2, i.shape[1]), np.float32) for i in step.get_inputs()[2:]}
worst = 0.0
for t in range(n_tokens):
    feed = {"token": tokens[:, t].astype(np.int64), "features": feats, **states}
    outs = step.run(None, feed)
    names = [o.name for o in step.get_outputs()]
    worst = max(worst, float(np.abs(np.exp(outs[0]) - probs_all[:, t]).max()))
    states = {n[: -len("_out")]: v for n, v in zip(names[1:], outs[1:])}
report["decoder_step_vs_engine"] = worst

enc = session("encoder.onnx")
shape = enc.get_inputs()[0].shape
images = np.fromfile(d / "images.bin", dtype="<f4").reshape(2, shape[1], shape[2], 3)
encoded = np.fromfile(d / "encoded.bin", dtype="<f4").reshape(2, -1)
(features,) = enc.run(None, {"images": images})
scale = max(1.0, float(np.abs(encoded).max()))
report["encoder_vs_engine_relative"] = float(np.abs(features - encoded).max() / scale)
report["onnxruntime"] = ort.__version__
print(json.dumps(report))
sys.exit(0 if all(v <= TOL for k, v in report.items() if k != "onnxruntime") else 1)
