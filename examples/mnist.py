"""NICE's MNIST model (Dinh et al. 2014, section 5.1) on local MNIST files.

    python examples/mnist.py --images PATH [--labels PATH]  # IDX (.gz or raw) or .npz
    python examples/mnist.py --download DIR                 # the 60,000 training images
    TFP_NICE_QUICK=1 python examples/mnist.py               # a smoke run on synthetic data

Paper hyperparameters: 4 additive couplings with odd/even partitions, coupling
networks of 5 hidden ReLU layers of 1000 units, the rescaling layer, a standard
logistic prior, pixels dequantized as (x * 255 + u) / 256, Adam with learning
rate 1e-3. The paper's "beta2 = 0.01, epsilon = 1e-4" is read in the notation
of the first Adam preprint (beta = one minus the decay rate): Keras's
`beta_2=0.99`. The paper reports a test log-likelihood of 1980.50 nats after
1,500 epochs on the 60,000 training images.

Without `--images`, it uses the 10,000-image test split in ../shared/data/mnist
when present (8,000 to train, 2,000 held out): a number from that split is not
the paper's protocol. It prints held-out log-likelihood (nats) and bits/dim
after every epoch.
"""

import argparse
import os
import pathlib
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_nice as tn  # noqa: E402
from tfp_nice.data import MNIST_LEVELS, dequantize, download_mnist, load_mnist  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def synthetic_idx(folder, n=300, seed=0):
    """Writes an IDX file of `n` 28x28 blobs: a stand-in for a smoke run, not MNIST."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    centres = rng.uniform(8, 20, size=(n, 2))
    images = 255 * np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2)
                          / 18.0)
    images = images.astype(np.uint8)
    path = pathlib.Path(folder) / "synthetic-images-idx3-ubyte"
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    path.write_bytes(header + images.tobytes())
    return path


class HeldOut(keras.callbacks.Callback):
    def __init__(self, x):
        super().__init__()
        self.x = x

    def on_epoch_end(self, epoch, logs=None):
        r = self.model.evaluate(self.x, batch_size=500, verbose=0, return_dict=True)
        print(f"epoch {epoch + 1:4d}  train NLL {logs['nll']:9.2f}  held-out log-likelihood "
              f"{-r['nll']:9.2f} nats  {r['bits_per_dim']:.4f} bits/dim", flush=True)


def main(argv=None):
    quick = os.environ.get("TFP_NICE_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=None, help="IDX (.gz or raw) or .npz images")
    parser.add_argument("--download", default=None, help="download MNIST's training split here")
    parser.add_argument("--epochs", type=int, default=1 if quick else 20)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        if args.images:
            images_path, source = pathlib.Path(args.images), args.images
        elif args.download:
            images_path, _ = download_mnist(args.download, split="train")
            source = "MNIST training split"
        elif quick:
            images_path, source = synthetic_idx(tmp), "synthetic blobs (smoke run, not MNIST)"
        elif SHARED.is_dir():
            images_path = SHARED / "t10k-images-idx3-ubyte.gz"
            source = "MNIST test split from ../shared (not the paper's protocol)"
        else:
            parser.error("give --images or --download (../shared/data/mnist is absent)")
        images, _ = load_mnist(images_path)

    x = images.reshape(len(images), -1)
    perm = np.random.default_rng(args.seed).permutation(len(x))
    n_held = int(round(args.held_out * len(x)))
    train = dequantize(x[perm[n_held:]], MNIST_LEVELS, seed=args.seed)
    held = dequantize(x[perm[:n_held]], MNIST_LEVELS, seed=args.seed + 1)
    print(f"{source}: {len(train)} images to train, {len(held)} held out")

    keras.utils.set_random_seed(args.seed)
    model = tn.NICE((x.shape[1],), num_couplings=4, hidden_units=(1000,) * 5,
                    partition="odd_even", rescaling=True, prior="logistic",
                    num_levels=MNIST_LEVELS)
    model.compile(keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.99, epsilon=1e-4))
    model.fit(train, epochs=args.epochs, batch_size=args.batch_size, verbose=0,
              callbacks=[HeldOut(held), keras.callbacks.TerminateOnNaN()])


if __name__ == "__main__":
    main()
