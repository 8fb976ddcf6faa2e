"""NICE's MNIST model (Dinh et al. 2014, section 5.1) on local MNIST files.

    python examples/mnist.py --images PATH [--labels PATH]  # IDX (.gz or raw) or .npz
    python examples/mnist.py --download DIR                 # the 60,000 training images
    TFP_NICE_QUICK=1 python examples/mnist.py               # a smoke run on synthetic data

The model and optimiser are `tfp_nice.presets.nice_mnist()`: 4 additive
couplings with odd/even partitions, coupling networks of 5 hidden ReLU layers of
1000 units, the rescaling layer, a standard logistic prior, pixels dequantized
as (x * 255 + u) / 256, Adam with learning rate 1e-3 and the paper's
"beta2 = 0.01, epsilon = 1e-4" read in the first Adam preprint's notation
(Keras `beta_2=0.99`; `--adam-beta-2 0.01` tries the literal reading). The paper
reports a test log-likelihood of 1980.50 nats after 1,500 epochs on the 60,000
training images.

Without `--images`, it uses the 10,000-image test split in ../shared/data/mnist
when present (8,000 to train, 2,000 held out): a number from that split is not
the paper's protocol. It prints held-out log-likelihood (nats) and bits/dim
after every epoch.
"""

import argparse
import os
import pathlib
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_nice as tn  # noqa: E402
from tfp_nice.data import download_mnist, load_mnist, train_test_split  # noqa: E402

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
    def __init__(self, x, start):
        super().__init__()
        self.x, self.start = x, start

    def on_epoch_end(self, epoch, logs=None):
        r = self.model.evaluate(self.x, batch_size=500, verbose=0, return_dict=True)
        print(f"epoch {epoch + 1:4d}  train NLL {logs['nll']:9.2f}  held-out log-likelihood "
              f"{-r['nll']:9.2f} nats  {r['bits_per_dim']:.4f} bits/dim  "
              f"({time.perf_counter() - self.start:.0f} s)", flush=True)


def main(argv=None):
    quick = os.environ.get("TFP_NICE_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=None, help="IDX (.gz or raw) or .npz images")
    parser.add_argument("--download", default=None, help="download MNIST's training split here")
    parser.add_argument("--epochs", type=int, default=1 if quick else 20)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=64 if quick else 256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rescaling-init", default="data", choices=["data", "zeros"])
    parser.add_argument("--adam-beta-2", type=float, default=0.99,
                        help="Keras beta_2; the paper's 'beta2 = 0.01' read as 1 - 0.01")
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

    if images.shape[1:] != (28, 28):
        parser.error(f"expected 28x28 images, got shape {images.shape[1:]}")
    keras.utils.set_random_seed(args.seed)
    preset = tn.presets.nice_mnist(rescaling_init=args.rescaling_init,
                                   adam_beta_2=args.adam_beta_2, seed=args.seed)
    train, held = train_test_split(images, test_fraction=args.held_out, seed=args.seed)
    train = preset.preprocess(train, seed=args.seed)
    held = preset.preprocess(held, seed=args.seed + 1)
    print(f"{source}: {len(train)} images to train, {len(held)} held out; rescaling_init="
          f"{args.rescaling_init}, Adam beta_2={args.adam_beta_2}")

    preset.model.compile(preset.optimizer)
    start = time.perf_counter()
    preset.model.fit(train, epochs=args.epochs, batch_size=args.batch_size, verbose=0,
                     callbacks=[HeldOut(held, start), keras.callbacks.TerminateOnNaN()])


if __name__ == "__main__":
    main()
