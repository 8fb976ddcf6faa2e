"""Class-conditional MNIST: the multi-scale convolutional flow given the digit's label.

    python examples/mnist_conditional.py                 # 2 x 3 minutes on 2 cores
    python examples/mnist_conditional.py --budget 600    # seconds of training per model
    TFP_NICE_QUICK=1 python examples/mnist_conditional.py  # a smoke run on synthetic data

Two flows of `tfp_nice.presets.glow_mnist()` are trained for the same budget on the
same images of the 10,000-image split in ../shared/data/mnist (7,000 to train, the
benchmarks' 2,000 held out; not the paper's protocol): one unconditional, `p(x)`, and
one given the one-hot label, `p(x | y)` (`num_classes=10`: the coupling networks see the
label as constant feature maps, the learned prior of the exiting channels sees it too).
Printed, for the held-out images:

* bits/dim of `p(x | y)` given the true label, of the conditional model's marginal
  `p(x) = sum_y p(y) p(x | y)` (with `p(y)` the training frequencies), and of the
  unconditional flow: the same budget, the same images;
* the accuracy of classifying each held-out digit by Bayes' rule,
  `argmax_y p(y) p(x | y)`: a sanity figure of what the conditioning learned;
* a grid of samples, a row per class, written to `--samples`.
"""

import argparse
import json
import math
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfp_nice as tn  # noqa: E402
from tfp_nice.data import MNIST_LEVELS, load_mnist, train_test_split  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


class Budget(keras.callbacks.Callback):
    """Stops training after `seconds` of it (checked after every batch)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def synthetic(n, seed=0):
    """Blobs whose position is set by a label: a stand-in for a smoke run, not MNIST."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    yy, xx = np.mgrid[:28, :28]
    centres = np.stack([6 + 1.6 * labels, 20 - 1.4 * labels], 1) + rng.normal(size=(n, 2))
    images = 255 * np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2)
                          / 12.0)
    return images.astype(np.uint8), labels


def held_out_nats(model, x, context=None, batch=500):
    rows = []
    for i in range(0, len(x), batch):
        given = {} if context is None else {"context": context[i:i + batch]}
        rows.append(model.log_prob(x[i:i + batch], **given).numpy())
    return np.concatenate(rows)


def bits(nats):
    return (784 * math.log(MNIST_LEVELS) - nats) / (784 * math.log(2))


def train(model, optimizer, images, labels, args, seed):
    model.compile(optimizer)
    context = None if labels is None else np.eye(10, dtype="float32")[labels]
    batches = tn.dequantized_batches(images, MNIST_LEVELS, 64, seed=seed, context=context)
    start = time.perf_counter()
    model.fit(batches, epochs=args.max_epochs, verbose=0, callbacks=[Budget(args.budget)])
    return time.perf_counter() - start


def main(argv=None):
    quick = os.environ.get("TFP_NICE_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=5.0 if quick else 180.0,
                        help="seconds of training per model (default: 180)")
    parser.add_argument("--max-epochs", type=int, default=1 if quick else 1000)
    parser.add_argument("--steps-per-scale", type=int, default=2 if quick else 8)
    parser.add_argument("--hidden-channels", type=int, default=8 if quick else 64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", default="runs/mnist-conditional-samples.png")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)

    if quick or not (SHARED / "t10k-images-idx3-ubyte.gz").is_file():
        if not quick:
            print(f"no MNIST split at {SHARED}: a smoke run on synthetic data")
        images, labels = synthetic(600)
        data = "synthetic"
    else:
        images, labels = load_mnist(SHARED / "t10k-images-idx3-ubyte.gz",
                                    SHARED / "t10k-labels-idx1-ubyte.gz")
        data = "MNIST t10k split"
    rows = np.arange(len(images))
    train_rows, test_rows = train_test_split(rows, test_fraction=0.2, seed=0)
    train_rows = train_rows[: int(len(rows) * 0.7)]  # 7,000 of 10,000, as section 7 trains
    x_train = images[train_rows].reshape(-1, 28, 28, 1)
    y_train, y_test = labels[train_rows].astype(int), labels[test_rows].astype(int)
    x_test = tn.data.dequantize(images[test_rows].reshape(-1, 28, 28, 1), MNIST_LEVELS,
                                seed=1)
    log_prior = np.log(np.bincount(y_train, minlength=10) / len(y_train) + 1e-12)
    options = dict(seed=args.seed, steps_per_scale=args.steps_per_scale,
                   hidden_channels=args.hidden_channels)

    keras.utils.set_random_seed(args.seed)
    uncond = tn.presets.glow_mnist(**options)
    seconds_u = train(uncond.model, uncond.optimizer, x_train, None, args, args.seed)
    nats_u = float(held_out_nats(uncond.model, x_test).mean())

    keras.utils.set_random_seed(args.seed)
    cond = tn.presets.glow_mnist(num_classes=10, **options)
    seconds_c = train(cond.model, cond.optimizer, x_train, y_train, args, args.seed)
    eye = np.eye(10, dtype="float32")
    given = np.stack([held_out_nats(cond.model, x_test, np.repeat(eye[[k]], len(x_test), 0))
                      for k in range(10)], 1)  # (n, 10): log p(x | y = k)
    nats_given_label = float(given[np.arange(len(x_test)), y_test].mean())
    joint = given + log_prior
    nats_marginal = float(np.mean(tf.reduce_logsumexp(joint, axis=1)))
    accuracy = float(np.mean(np.argmax(joint, axis=1) == y_test))

    report = {
        "data": data, "train_images": len(x_train), "held_out_images": len(x_test),
        "budget_seconds": args.budget,
        "unconditional": {"nats": nats_u, "bits_per_dim": bits(nats_u),
                          "train_seconds": seconds_u},
        "conditional": {"nats_given_label": nats_given_label,
                        "bits_per_dim_given_label": bits(nats_given_label),
                        "marginal_nats": nats_marginal,
                        "marginal_bits_per_dim": bits(nats_marginal),
                        "bayes_rule_accuracy": accuracy, "train_seconds": seconds_c},
    }
    print(json.dumps(report, indent=2))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2) + "\n")

    drawn = cond.model.sample(10, temperature=0.7, seed=tf.constant([args.seed, 0]),
                              context=eye).numpy()  # (10 per class, 10 classes, 28, 28, 1)
    grid = np.clip(np.swapaxes(drawn, 0, 1), 0, 1)  # row k: label k
    grid = grid.reshape(10, 10, 28, 28).transpose(0, 2, 1, 3).reshape(280, 280)
    out = pathlib.Path(args.samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title("p(x | y): a row per label 0-9, temperature 0.7")
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"samples: {out}")
    return report


if __name__ == "__main__":
    main()
