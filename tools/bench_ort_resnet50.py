"""Reference timing for `autocaption bench encode`: ResNet-50 (Keras layout, pooled 2048-d,
random weights: the arithmetic is the same as with trained ones) exported with tf2onnx and run
with ONNX Runtime on this machine.

    python3 -m venv venv && venv/bin/pip install "tensorflow-cpu==2.15.1" "tf2onnx==1.16.1" onnx onnxruntime "numpy<2"
    venv/bin/python tools/bench_ort_resnet50.py
"""
import os
import tempfile
import time

import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tf2onnx


def best_of(fn, repeats=10):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


model = tf.keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(224, 224, 3))
spec = (tf.TensorSpec((None, 224, 224, 3), tf.float32, name="input"),)
path = os.path.join(tempfile.mkdtemp(), "resnet50.onnx")
tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=path)
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
rng = np.random.default_rng(0)
for batch in (1, 8):
    x = rng.uniform(-120, 150, (batch, 224, 224, 3)).astype(np.float32)
    t = best_of(lambda: sess.run(None, {name: x}))
    print(f"onnxruntime {ort.__version__} batch {batch}: {t * 1e3:.1f} ms per batch, {batch / t:.1f} images/s")
    tk = best_of(lambda: model(x, training=False), repeats=5)
    print(f"tensorflow {tf.__version__} batch {batch}: {tk * 1e3:.1f} ms per batch, {batch / tk:.1f} images/s")
