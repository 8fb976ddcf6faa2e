"""One worker of the multi-worker test (run as a script by test_distributed.py).

    python multiworker_worker.py PORTS INDEX OUT.json     # INDEX -1: a single process
"""

import json
import os
import sys

ports = [int(p) for p in sys.argv[1].split(",")]
index = int(sys.argv[2])
if index >= 0:
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index},
    })

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfp_nice as tn  # noqa: E402

strategy = (tf.distribute.MultiWorkerMirroredStrategy() if index >= 0
            else tf.distribute.get_strategy())
x = np.random.default_rng(0).normal(size=(256, 6)).astype("float32")
with strategy.scope():
    model = tn.NICE((6,), num_couplings=2, hidden_units=(16,), actnorm=True, seed=0)
    rng = np.random.default_rng(1)
    for w in model.trainable_weights:
        w.assign(rng.normal(scale=0.2, size=w.shape).astype("float32"))
    model.compile(keras.optimizers.SGD(1e-2))
history = model.fit(x, epochs=3, batch_size=32, shuffle=False, verbose=0)
with open(sys.argv[3], "w") as f:
    json.dump({"loss": history.history["loss"], "nll": history.history["nll"],
               "replicas": strategy.num_replicas_in_sync,
               "log_prob": model.log_prob(x[:8]).numpy().tolist()}, f)
