"""End-to-end check of `autocaption features` against Keras' own ResNet-50 at full size.

    venv/bin/pip install "tensorflow-cpu==2.15.1" "numpy<2" pillow safetensors
    venv/bin/python tools/check_keras_resnet50.py target/release/autocaption IMAGE_DIR [COUNT]

Builds `tf.keras.applications.ResNet50(weights=None, include_top=False, pooling="avg")` -
the real architecture, not a re-creation - gives its batch norms random statistics (so the
folding is exercised), saves it with `save_weights` as HDF5 (the layout of the released
resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5), runs Keras on the first COUNT images
of IMAGE_DIR (load_img 224x224 + preprocess_input), runs `autocaption features --weights`
on the same images, and prints the largest difference relative to the largest feature.
Nothing is kept: the 94 MB weights file lives in a temporary directory.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file
from safetensors import safe_open
import json

binary, image_dir = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 8
rng = np.random.default_rng(0)
model = tf.keras.applications.ResNet50(weights=None, include_top=False, pooling="avg")
for layer in model.layers:
    if isinstance(layer, tf.keras.layers.BatchNormalization):
        c = layer.gamma.shape[0]
        layer.set_weights([
            rng.uniform(0.5, 1.5, c).astype(np.float32),
            rng.normal(0, 0.1, c).astype(np.float32),
            rng.normal(0, 0.1, c).astype(np.float32),
            rng.uniform(0.5, 2.0, c).astype(np.float32),
        ])

tmp = tempfile.mkdtemp()
try:
    weights = os.path.join(tmp, "resnet50_random_notop.h5")
    model.save_weights(weights)
    names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith((".jpg", ".jpeg", ".png")))[:count]
    images = os.path.join(tmp, "images")
    os.makedirs(images)
    batch = []
    for n in names:
        shutil.copy(os.path.join(image_dir, n), images)
        img = tf.keras.utils.load_img(os.path.join(image_dir, n), target_size=(224, 224))
        batch.append(tf.keras.applications.resnet50.preprocess_input(tf.keras.utils.img_to_array(img)[None])[0])
    want = model.predict(np.stack(batch), verbose=0)
    out = os.path.join(tmp, "features.safetensors")
    subprocess.run([binary, "features", "-q", "--weights", weights, "--images", images, "--out", out], check=True)
    with safe_open(out, "np") as f:
        got = f.get_tensor("features")
        order = json.loads(f.metadata()["names"])
    got = got[[order.index(n) for n in names]]
    worst = float(np.abs(got - want).max() / np.abs(want).max())
    print(f"{len(names)} images, features {got.shape}, Keras mean {want.mean():.4f}, "
          f"max |ours - keras| / max |keras| = {worst:.2e}")
    sys.exit(0 if worst <= 1e-4 else 1)
finally:
    shutil.rmtree(tmp)
