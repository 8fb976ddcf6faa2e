"""MNIST with the library's recipes or NICE's model (Dinh et al. 2014, section 5.1).

    python examples/mnist.py --images PATH [--labels PATH]  # IDX (.gz or raw) or .npz
    python examples/mnist.py --download DIR                 # the 60,000 training images
    python examples/mnist.py --preset glow_mnist            # the multi-scale convolutional flow
    python examples/mnist.py --preset nice_mnist            # NICE's own model and optimiser
    TFP_NICE_QUICK=1 python examples/mnist.py               # a smoke run on synthetic data

By default the model and optimiser are `tfp_nice.presets.affine_mnist()`, the
library's recipe: RealNVP's logit preprocessing, 16 affine couplings of 3x256
ReLU networks with an ActNorm and a random permutation before each, the
rescaling, and Adam with a moving average of the weights (the held-out figures
below are the averaged weights', what `fit` leaves in the model). See its
docstring and benchmarks/README.md (section 7) for what it reaches in 1, 3, 10
and 30 minutes.

With `--preset glow_mnist`, they are `tfp_nice.presets.glow_mnist()`: the
logit preprocessing, then two scales of 8 Glow steps (per-channel ActNorm,
invertible 1x1 convolution, affine channel coupling with a 3x3 -> 1x1 -> 3x3
convolutional network of 64 channels) over the images kept in their shape,
with a factor-out and Glow's learned prior between the scales; batches of 64.

With `--preset nice_mnist`, they are `tfp_nice.presets.nice_mnist()`: 4 additive
couplings with odd/even partitions, coupling networks of 5 hidden ReLU layers of
1000 units, the rescaling layer, a standard logistic prior, pixels dequantized
as (x * 255 + u) / 256, Adam with learning rate 1e-3 and the paper's
"beta2 = 0.01, epsilon = 1e-4" read in the first Adam preprint's notation
(Keras `beta_2=0.99`; `--adam-beta-2 0.01` tries the literal reading). The paper
reports a test log-likelihood of 1980.50 nats after 1,500 epochs on the 60,000
training images.

Without `--images`, it uses the 10,000-image test split in ../shared/data/mnist
when present (8,000 to train and stop on, 2,000 held out): a number from that split is not
the paper's protocol. Training images are dequantized afresh every epoch
(`tfp_nice.dequantized_batches`), the held-out ones once. It prints held-out
log-likelihood (nats) and bits/dim after every epoch.

Training stops where the model stops improving: `--validation` (default 1/8) of
the training images are set aside, never trained on, and
`tfp_nice.AveragedEarlyStopping` stops `--patience` epochs (default 10) after
the best validation figure and leaves that epoch's weights in the model, whose
held-out figure is printed last (`--patience 0` trains all `--epochs`).
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
from tfp_nice.data import MNIST_LEVELS, download_mnist, load_mnist  # noqa: E402
from tfp_nice.data import train_test_split  # noqa: E402

PRESETS = ("affine_mnist", "glow_mnist", "nice_mnist")
BATCH_SIZES = {"glow_mnist": 64}  # the recipes' batch sizes (256 for the others)
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
        with tn.averaged_weights(self.model):  # an EMA optimizer's averages: what fit leaves
            r = self.model.evaluate(self.x, batch_size=500, verbose=0, return_dict=True)
        val = logs.get("val_averaged_nll")
        val = "" if val is None else f"  validation NLL {val:9.2f}"
        print(f"epoch {epoch + 1:4d}  train NLL {logs['nll']:9.2f}{val}  held-out log-likelihood "
              f"{-r['nll']:9.2f} nats  {r['bits_per_dim']:.4f} bits/dim  "
              f"({time.perf_counter() - self.start:.0f} s)", flush=True)


def main(argv=None):
    quick = os.environ.get("TFP_NICE_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=None, help="IDX (.gz or raw) or .npz images")
    parser.add_argument("--download", default=None, help="download MNIST's training split here")
    parser.add_argument("--epochs", type=int, default=1 if quick else 100)
    parser.add_argument("--held-out", type=float, default=0.2)
    parser.add_argument("--validation", type=float, default=0.125,
                        help="share of the training images set aside to stop on")
    parser.add_argument("--patience", type=int, default=10,
                        help="epochs without a better validation figure before stopping "
                             "(0: train all --epochs)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 64 for glow_mnist (and smoke runs), else 256")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="affine_mnist", choices=PRESETS,
                        help="affine_mnist (the library's dense recipe, default), glow_mnist "
                             "(the multi-scale convolutional flow) or nice_mnist (NICE's "
                             "model and optimiser)")
    parser.add_argument("--samples", default=None, metavar="PNG",
                        help="after training, write a grid of samples at temperatures 0.7 "
                             "(top two rows) and 1.0 (bottom two rows) here")
    parser.add_argument("--rescaling-init", default=None, choices=["data", "zeros"],
                        help="nice_mnist only (default: data)")
    parser.add_argument("--adam-beta-2", type=float, default=None,
                        help="nice_mnist only: Keras beta_2 (default 0.99, the paper's "
                             "'beta2 = 0.01' read as 1 - 0.01)")
    args = parser.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 64 if quick else BATCH_SIZES.get(args.preset, 256)
    if args.patience < 0:
        parser.error(f"--patience must be >= 0, got {args.patience}")
    if args.patience and not 0 < args.validation < 1:
        parser.error(f"--validation must be in (0, 1) to stop early, got {args.validation}")
    paper_options = {"rescaling_init": args.rescaling_init, "adam_beta_2": args.adam_beta_2}
    paper_options = {k: v for k, v in paper_options.items() if v is not None}
    if paper_options and args.preset != "nice_mnist":
        flags = ", ".join("--" + k.replace("_", "-") for k in paper_options)
        parser.error(f"{flags} apply to --preset nice_mnist only (got --preset {args.preset})")

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
    preset = getattr(tn.presets, args.preset)(seed=args.seed, **paper_options)
    train, held = train_test_split(images, test_fraction=args.held_out, seed=args.seed)
    stop = None
    if args.patience:
        train, validation = train_test_split(train, test_fraction=args.validation,
                                             seed=args.seed)
        stop = tn.AveragedEarlyStopping(preset.preprocess(validation, seed=args.seed + 2),
                                        args.patience)
    shape = preset.model.event_shape  # (784,) for the dense models, (28, 28, 1) for glow
    batches = tn.dequantized_batches(train.reshape((len(train),) + shape), MNIST_LEVELS,
                                     args.batch_size, seed=args.seed)
    held = preset.preprocess(held, seed=args.seed + 1)
    options = "".join(f", {k}={v}" for k, v in paper_options.items())
    kept = f", {len(validation)} to stop on" if stop else ""
    print(f"{source}: {len(train)} images to train{kept}, {len(held)} held out; "
          f"preset {args.preset}{options}")

    preset.model.compile(preset.optimizer)
    start = time.perf_counter()
    callbacks = [HeldOut(held, start), keras.callbacks.TerminateOnNaN()]
    preset.model.fit(batches, epochs=args.epochs, verbose=0,
                     callbacks=callbacks if stop is None else [stop, *callbacks])
    r = preset.model.evaluate(held, batch_size=500, verbose=0, return_dict=True)
    if stop is not None and stop.best_epoch is not None:
        print(f"best validation figure after epoch {stop.best_epoch + 1} (stopped: "
              f"{'yes' if stop.stopped_epoch else 'no, out of epochs'}); ", end="")
    print(f"the model fit left: held-out log-likelihood {-r['nll']:.2f} nats, "
          f"{r['bits_per_dim']:.4f} bits/dim")
    if args.samples:
        from tfp_nice.cli.plots import image_grid

        samples = [preset.model.sample(16, temperature=t, seed=args.seed).numpy()
                   for t in (0.7, 1.0)]
        image_grid(np.concatenate(samples), (28, 28), args.samples,
                   title=f"{args.preset}: temperature 0.7 (top), 1.0 (bottom)")
        print(f"wrote {args.samples}")


if __name__ == "__main__":
    main()
