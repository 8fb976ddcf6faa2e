"""`tfp-nice`: train, sample from and evaluate NICE flows from the command line."""

import argparse
import csv
import json
import math
import os
import pathlib
import platform
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_nice._fs import staged_dir
from tfp_nice._version import __version__
from tfp_nice.cli import plots
from tfp_nice.cli.inputs import BUILTIN_DATA, InputError, load_dataset, load_model
from tfp_nice.data import bits_per_dim, train_test_split
from tfp_nice.export import export_saved_model
from tfp_nice.models import NICE

EXIT_BAD_INPUT = 2


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfp-nice",
        description="Train, sample from and evaluate NICE normalizing flows "
                    "(TensorFlow Probability + Keras 3).",
    )
    parser.add_argument("--version", action="version", version=f"tfp_nice {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    data_help = (f"a built-in data set ({', '.join(BUILTIN_DATA)}) or a .npy, .csv, .npz "
                 "or MNIST IDX file of shape (n, d) or (n, h, w)")
    train = sub.add_parser("train", help="train a NICE flow and write its outputs to --out")
    train.add_argument("--data", default="digits", help=f"{data_help} (default: digits)")
    train.add_argument("--num-points", type=_positive_int, default=10000,
                       help="points drawn from a 2-D toy data set (default: 10000)")
    train.add_argument("--num-levels", type=_positive_int, default=None,
                       help="discrete levels of integer data (default: 256 for uint8, "
                            "else max + 1)")
    train.add_argument("--epochs", type=_positive_int, default=300)
    train.add_argument("--batch-size", type=_positive_int, default=64)
    train.add_argument("--learning-rate", type=_positive_float, default=1e-3)
    train.add_argument("--couplings", type=_positive_int, default=4)
    train.add_argument("--hidden", type=_positive_int, nargs="+", default=[64, 64],
                       help="hidden layer widths of each coupling network (default: 64 64)")
    train.add_argument("--partition", default="odd_even", choices=["odd_even", "halves"])
    train.add_argument("--prior", default="logistic", choices=["logistic", "normal"])
    train.add_argument("--no-rescaling", action="store_true",
                       help="leave out NICE's rescaling layer (a volume-preserving flow)")
    train.add_argument("--validation-split", type=_fraction, default=0.1)
    train.add_argument("--test-split", type=_fraction, default=0.2)
    train.add_argument("--patience", type=int, default=20,
                       help="early-stopping patience in epochs on the validation NLL "
                            "(0 turns it off; default: 20)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default=None, help="output folder (default: runs/<data>)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    train.add_argument("--resume", action="store_true",
                       help="save the model after every epoch (beside --out) and, if such "
                            "a backup of an interrupted run exists, go on from it")
    train.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2],
                       help="Keras progress: 0 silent, 1 progress bar, 2 one line per epoch")

    sample = sub.add_parser("sample", help="draw samples from a model")
    sample.add_argument("model", help="a model.keras file or a SavedModel folder")
    sample.add_argument("--num-samples", type=_positive_int, default=64)
    sample.add_argument("--temperature", type=_positive_float, default=1.0)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", default="samples.npy",
                        help="where to write the samples (.npy); a PNG is written beside it")

    inpaint = sub.add_parser("inpaint", help="fill in hidden parts of examples (NICE 5.2)")
    inpaint.add_argument("model", help="a model.keras file (gradients are needed)")
    inpaint.add_argument("--data", default="digits", help=data_help + " (default: digits)")
    inpaint.add_argument("--hide", default="bottom", choices=["bottom", "top", "left", "right",
                                                               "random"],
                         help="which part to hide: a half of each image, or a random half")
    inpaint.add_argument("--num-examples", type=_positive_int, default=16)
    inpaint.add_argument("--num-steps", type=_positive_int, default=500)
    inpaint.add_argument("--step-scale", type=_positive_float, default=0.1,
                         help="c of the step size c / (100 + i) (default 0.1, which suits "
                              "digits; the paper's 10 suits its MNIST model and overshoots "
                              "on steeper densities: watch log_prob_after)")
    inpaint.add_argument("--noise", type=float, default=0.0,
                         help="scale of the Gaussian noise added to the gradient")
    inpaint.add_argument("--seed", type=int, default=0)
    inpaint.add_argument("--out", default="inpainted.npy",
                         help="where to write the inpainted examples (.npy); a PNG beside it")

    evaluate = sub.add_parser("evaluate", help="NLL and bits/dim of a data set under a model")
    evaluate.add_argument("model", help="a model.keras file or a SavedModel folder")
    evaluate.add_argument("--data", required=True, help=data_help)
    evaluate.add_argument("--num-points", type=_positive_int, default=10000)
    evaluate.add_argument("--seed", type=int, default=0)
    return parser


def _versions():
    return {"tfp_nice": __version__, "tensorflow": tf.__version__,
            "tensorflow_probability": tfp.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _scores(model, x, batch_size):
    if len(x) == 0:
        return None
    log_p = model.predict(x, batch_size=max(batch_size, 256), verbose=0)
    nll = -float(np.mean(log_p))
    return {"nll": nll, "bits_per_dim": float(model.bits_per_dim(nll)), "count": int(len(x))}


def train(args):
    dataset = load_dataset(args.data, args.num_points, args.num_levels, args.seed)
    out = pathlib.Path(args.out or os.path.join("runs", dataset.name))
    if out.exists() and not args.overwrite:
        raise InputError(f"--out {out} exists; pass --overwrite to replace it.")
    train_x, test_x = train_test_split(dataset.x, args.test_split, args.seed)
    n_fit = len(train_x) - int(len(train_x) * args.validation_split)
    if n_fit < 1:
        raise InputError(f"{dataset.name} has {len(dataset.x)} examples: too few to split.")
    if args.batch_size > n_fit:
        raise InputError(f"--batch-size {args.batch_size} is larger than the "
                         f"{n_fit} training examples.")

    keras.utils.set_random_seed(args.seed)
    model = NICE(
        dataset.event_shape, num_couplings=args.couplings, hidden_units=tuple(args.hidden),
        partition=args.partition, rescaling=not args.no_rescaling, prior=args.prior,
        num_levels=dataset.num_levels,
    )
    model.compile(keras.optimizers.Adam(args.learning_rate))
    callbacks = [keras.callbacks.TerminateOnNaN()]
    backup = out.parent / f".{out.name}.backup"
    history_csv = backup / "history.csv"
    initial_epoch = 0
    if args.resume:
        backup.mkdir(parents=True, exist_ok=True)
        initial_epoch, saved = _latest_backup(backup)
        if saved is not None:
            print(f"resuming the interrupted run in {backup} after epoch {initial_epoch}",
                  flush=True)
            model = keras.models.load_model(saved)  # weights and optimizer state
        # The log is written before the backup at each epoch's end, so a run killed
        # between the two repeats that epoch rather than losing it.
        callbacks += [keras.callbacks.CSVLogger(str(history_csv), append=True),
                      _EpochBackup(backup)]
    if args.patience > 0 and args.validation_split > 0:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=args.patience, restore_best_weights=True))
    print(f"training NICE on {dataset.name}: {len(train_x)} examples of shape "
          f"{dataset.event_shape} ({len(test_x)} held out for test)", flush=True)
    start = time.perf_counter()
    history = model.fit(train_x, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=args.validation_split, callbacks=callbacks,
                        verbose=args.verbose, initial_epoch=initial_epoch)
    seconds = time.perf_counter() - start
    full_history = _read_history(history_csv) if args.resume else history.history
    losses = full_history["loss"]
    if not np.all(np.isfinite(losses)):
        raise InputError("training diverged (the loss became NaN or inf); try a smaller "
                         "--learning-rate. Nothing was written.")

    n_val = len(train_x) - n_fit
    metrics = {
        "data": dataset.name,
        "event_shape": list(dataset.event_shape),
        "num_levels": dataset.num_levels,
        "epochs": len(losses),
        "wall_time_seconds": seconds,
        "train": _scores(model, train_x[:n_fit], args.batch_size),
        "validation": _scores(model, train_x[n_fit:], args.batch_size) if n_val else None,
        "test": _scores(model, test_x, args.batch_size),
        "history": {k: [float(v) for v in vals] for k, vals in full_history.items()},
        "arguments": vars(args),
        "versions": _versions(),
    }
    with staged_dir(out, overwrite=args.overwrite) as tmp:
        model.save(tmp / "model.keras")
        export_saved_model(model, tmp / "saved_model")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        plots.loss_curves(full_history, tmp / "loss.png")
        samples = model.sample(1000 if dataset.x.shape[1] == 2 else 64, seed=args.seed).numpy()
        if dataset.x.shape[1] == 2:
            plots.scatter_pair(test_x if len(test_x) else train_x, samples, tmp / "samples.png")
            plots.density_map(lambda g: model.log_prob(g).numpy(), dataset.x, tmp / "density.png")
        elif dataset.image_shape is not None:
            plots.image_grid(samples, dataset.image_shape, tmp / "samples.png")

    if args.resume:
        shutil.rmtree(backup, ignore_errors=True)
    test = metrics["test"] or metrics["train"]
    which = "test" if metrics["test"] else "train"
    print(f"\n{which} NLL {test['nll']:.3f} nats/example, {test['bits_per_dim']:.4f} bits/dim "
          f"after {len(losses)} epochs ({seconds:.1f} s)")
    print(f"outputs in {out}/: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


class _EpochBackup(keras.callbacks.Callback):
    """Saves the whole model (optimizer included) after every epoch, atomically.

    Each backup is written under a temporary name and renamed to
    `epoch-<n>.keras` (n finished epochs) once complete, so a kill at any moment
    leaves the previous backup whole; older ones are then removed.
    """

    def __init__(self, folder):
        super().__init__()
        self.folder = pathlib.Path(folder)

    def on_epoch_end(self, epoch, logs=None):
        partial = self.folder / "partial.keras"
        self.model.save(partial)
        os.replace(partial, self.folder / f"epoch-{epoch + 1}.keras")
        for old in self.folder.glob("epoch-*.keras"):
            if old.name != f"epoch-{epoch + 1}.keras":
                old.unlink()


def _latest_backup(folder):
    """`(finished_epochs, path)` of the newest whole backup, or `(0, None)`."""
    found = sorted((int(p.stem.split("-")[1]), p) for p in folder.glob("epoch-*.keras"))
    return found[-1] if found else (0, None)


def _read_history(path):
    """The per-epoch logs of a CSVLogger file, the last row of each epoch kept."""
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows[int(row["epoch"])] = row
    keys = [k for k in next(iter(rows.values())) if k != "epoch"] if rows else []
    return {k: [float(rows[e][k]) for e in sorted(rows)] for k in keys}


def _write_npy(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def sample(args):
    out = pathlib.Path(args.out)
    if out.suffix != ".npy":
        raise InputError(f"--out must end in .npy, got {out}.")
    kind, model, info = load_model(args.model)

    if kind == "keras":
        seed = tf.constant([args.seed % (2**31 - 1), 0], tf.int32)
        x = model.sample(args.num_samples, temperature=args.temperature, seed=seed).numpy()
    else:
        dtype = tf.as_dtype(info["dtype"])
        x = model.signatures["sample"](
            num_samples=tf.constant(args.num_samples, tf.int32),
            temperature=tf.constant(args.temperature, dtype),
            seed=tf.constant(abs(args.seed), tf.int64))["x"].numpy()
    _write_npy(out, x)
    flat = x.reshape(len(x), -1)
    d = flat.shape[1]
    image_shape = info["event_shape"] if len(info["event_shape"]) == 3 else (
        (math.isqrt(d),) * 2 if math.isqrt(d) ** 2 == d and d > 4 else None)
    png = out.with_suffix(".png")
    drew = plots.samples_picture(flat, image_shape, png)
    print(f"wrote {len(x)} samples of shape {tuple(x.shape[1:])} to {out}"
          + (f" and {png}" if drew else ""))
    return 0


def evaluate(args):
    kind, model, info = load_model(args.model)
    dataset = load_dataset(args.data, args.num_points, info["num_levels"], args.seed,
                           float_levels=False)
    expected = math.prod(info["event_shape"])
    if dataset.x.shape[1] != expected:
        raise InputError(f"{args.data} has {dataset.x.shape[1]} values per example but the "
                         f"model expects {expected} (event shape {info['event_shape']}).")

    x = dataset.x.reshape((len(dataset.x),) + tuple(info["event_shape"]))
    x = x.astype(tf.as_dtype(info["dtype"]).as_numpy_dtype)
    if kind == "keras":
        log_p = model.predict(x, batch_size=256, verbose=0)
    else:
        log_p = np.concatenate([
            model.signatures["log_prob"](x=tf.constant(x[i:i + 1024]))["log_prob"].numpy()
            for i in range(0, len(x), 1024)])
    nll = -float(np.mean(log_p))
    bpd = float(bits_per_dim(nll, expected, info["num_levels"]))
    print(json.dumps({"data": dataset.name, "count": len(x), "nll": nll, "bits_per_dim": bpd}))
    return 0


def _hidden_mask(kind, image_shape, size, seed):
    """`True` = observed. Halves of an image, or a random half of the entries."""
    if kind == "random" or image_shape is None:
        if kind != "random":
            raise InputError(f"--hide {kind} needs image data; use --hide random.")
        observed = np.ones(size, bool)
        observed[np.random.default_rng(seed).permutation(size)[: size // 2]] = False
        return observed
    h, w = image_shape[:2]
    observed = np.ones((h, w), bool)
    if kind == "bottom":
        observed[h // 2:] = False
    elif kind == "top":
        observed[: h // 2] = False
    elif kind == "left":
        observed[:, : w // 2] = False
    else:
        observed[:, w // 2:] = False
    return np.broadcast_to(observed.reshape(h, w, *([1] * (len(image_shape) - 2))),
                           image_shape).reshape(size)


def inpaint(args):
    out = pathlib.Path(args.out)
    if out.suffix != ".npy":
        raise InputError(f"--out must end in .npy, got {out}.")
    kind, model, info = load_model(args.model)
    if kind != "keras":
        raise InputError("inpaint needs a model.keras file: a SavedModel serves no gradients.")
    dataset = load_dataset(args.data, 10000, info["num_levels"], args.seed, float_levels=False)
    size = math.prod(info["event_shape"])
    if dataset.x.shape[1] != size:
        raise InputError(f"{args.data} has {dataset.x.shape[1]} values per example but the "
                         f"model expects {size}.")
    x = dataset.x[: args.num_examples]
    observed = _hidden_mask(args.hide, dataset.image_shape, size, args.seed)
    start = np.where(observed, x, dataset.x.mean(0)).astype(x.dtype)
    shape = (len(x),) + tuple(info["event_shape"])
    filled = model.inpaint(start.reshape(shape), observed.reshape(info["event_shape"]),
                           num_steps=args.num_steps,
                           step_size=lambda i: args.step_scale / (100.0 + i),
                           noise=args.noise, seed=args.seed).numpy().reshape(len(x), -1)
    _write_npy(out, filled)
    hidden = ~observed
    report = {
        "count": int(len(x)),
        "mse_mean_filling": float(np.mean((start - x)[:, hidden] ** 2)),
        "mse_inpainted": float(np.mean((filled - x)[:, hidden] ** 2)),
        "log_prob_before": float(np.mean(model.log_prob(start.reshape(shape)))),
        "log_prob_after": float(np.mean(model.log_prob(filled.reshape(shape)))),
    }
    if dataset.image_shape is not None:
        rows = np.concatenate([x, np.where(observed, x, 0.0), filled], axis=0)
        plots.image_grid(rows, dataset.image_shape, out.with_suffix(".png"),
                         columns=len(x))
    print(json.dumps(report))
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = {"train": train, "sample": sample, "evaluate": evaluate,
               "inpaint": inpaint}[args.command]
    try:
        return command(args)
    except (InputError, FileNotFoundError, FileExistsError) as err:
        print(f"tfp-nice {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
