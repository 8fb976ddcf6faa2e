"""Seconds per `fit` epoch of a preset on random images, on this checkout or an older one:
the quick check of a training-speed change, run alternately in fresh processes.

    for i in 1 2; do for code in /tmp/before -; do
        python benchmarks/epoch_before_after.py $code affine_mnist; done; done

`-` is this checkout; a directory is an older checkout (`git worktree add DIR REV`). 2,560
images, batch 256 (64 for glow_mnist), one epoch to trace, then the median of three.
"""
import json
import os
import sys
import time

code, preset = sys.argv[1], sys.argv[2]
if code != "-":
    sys.path.insert(0, code)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_nice as tn  # noqa: E402

keras.utils.set_random_seed(0)
recipe = getattr(tn.presets, preset)(seed=0)
model = recipe.model
x = np.random.default_rng(0).random((2560,) + tuple(model.event_shape)).astype("float32")
batch = 64 if preset == "glow_mnist" else 256
model.compile(recipe.optimizer)
model.fit(x[:2 * batch], epochs=1, batch_size=batch, verbose=0)
seconds = []
for _ in range(3):
    start = time.perf_counter()
    model.fit(x, epochs=1, batch_size=batch, verbose=0)
    seconds.append(time.perf_counter() - start)
print(json.dumps({"code": code, "preset": preset, "tfp_nice": tn.__file__,
                  "median_epoch_s": sorted(seconds)[1]}))
