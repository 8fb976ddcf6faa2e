"""Train a small flow, export it, and serve it from a process without tfp_nice.

    python examples/export_and_serve.py
    TFP_NICE_QUICK=1 python examples/export_and_serve.py

The serving side imports TensorFlow only: it loads the SavedModel, reads its
metadata, scores points with the `log_prob` signature and draws seeded samples.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_nice as tn  # noqa: E402
from tfp_nice.data import two_moons  # noqa: E402

SERVER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    served = tf.saved_model.load(sys.argv[1])
    points = tf.constant(np.load(sys.argv[2]))
    meta = {k: v.numpy() for k, v in served.signatures["metadata"]().items()}
    log_prob = served.signatures["log_prob"](x=points)["log_prob"].numpy()
    samples = served.signatures["sample"](num_samples=tf.constant(3), temperature=tf.constant(1.0),
                                          seed=tf.constant(42, tf.int64))["x"].numpy()
    print(json.dumps({"event_shape": meta["event_shape"].tolist(),
                      "prior": meta["prior"].decode(),
                      "log_prob": log_prob.round(5).tolist(),
                      "samples": samples.round(4).tolist(),
                      "tfp_nice_loaded": "tfp_nice" in sys.modules}))
""")


def main(argv=None):
    quick = os.environ.get("TFP_NICE_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2 if quick else 20)
    parser.add_argument("--out", default=None, help="where to write the SavedModel")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    model = tn.NICE((2,), num_couplings=4, hidden_units=(64, 64))
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(two_moons(4000, seed=0), epochs=args.epochs, batch_size=128, verbose=0)

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(args.out or os.path.join(tmp, "nice_moons"))
        tn.export_saved_model(model, path, overwrite=True)
        points = np.array([[0.0, 1.0], [1.0, -0.5], [3.0, 3.0]], np.float32)
        np.save(os.path.join(tmp, "points.npy"), points)
        served = subprocess.run([sys.executable, "-c", SERVER, str(path),
                                 os.path.join(tmp, "points.npy")],
                                capture_output=True, text=True, check=True)
        print("exported to", path)
        print("in-process log_prob:", np.round(model.log_prob(points).numpy(), 5).tolist())
        print("served (TensorFlow only):", served.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
