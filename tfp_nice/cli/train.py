"""`tfp-nice train`: build the architecture its flags choose, train it, write the run."""

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
from tfp_nice.cli import architectures, plots
from tfp_nice.cli.inputs import (
    InputError,
    load_dataset,
    load_labels,
    one_hot,
)
from tfp_nice.cli.resume import EpochBackup, latest_backup, read_history
from tfp_nice.data import train_test_split
from tfp_nice.export import export_saved_model
from tfp_nice.models import NICE
from tfp_nice.models.training import AveragedEarlyStopping, TrainingDataError

__all__ = ["train"]


def _versions():
    return {"tfp_nice": __version__, "tensorflow": tf.__version__,
            "tensorflow_probability": tfp.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _count(n, noun):
    """`1 epoch`, `2 epochs`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _verbosity(verbose):
    """`--verbose`, or Keras's progress bar on a terminal and one line per epoch elsewhere.

    The progress bar redraws itself with terminal escape codes, which fill a log file
    or a pipe with noise.
    """
    if verbose is not None:
        return verbose
    return 1 if hasattr(sys.stdout, "isatty") and sys.stdout.isatty() else 2


def _event_shape(dataset, partition):
    """Vectors for the partitions of flat data; the image shape for image partitions."""
    if partition not in ("checkerboard", "channel"):
        return (int(dataset.x.shape[1]),)
    shape = dataset.image_shape
    if shape is None:
        raise InputError(f"--partition {partition} needs image data; {dataset.name} holds "
                         "vectors (use odd_even or halves).")
    if partition == "channel" and (len(shape) != 3 or shape[-1] < 2):
        raise InputError(f"--partition channel needs images with 2 or more channels, "
                         f"(n, h, w, c) data; {dataset.name} has images of shape "
                         f"{tuple(shape)}.")
    return tuple(int(d) for d in shape)


def _scores(model, x, batch_size, context=None):
    if len(x) == 0:
        return None
    given = x if context is None else {"x": x, "context": context}
    log_p = model.predict(given, batch_size=max(batch_size, 256), verbose=0)
    nll = -float(np.mean(log_p))
    return {"nll": nll, "bits_per_dim": float(model.bits_per_dim(nll)), "count": int(len(x))}


def _preset_fits(args, dataset, model):
    """An error unless `--preset`'s model takes the data (28x28 images of 256 levels)."""
    size = math.prod(model.event_shape)
    images = dataset.image_shape is not None and math.prod(dataset.image_shape) == size
    if (dataset.x.shape[1] != size or dataset.num_levels != model.num_levels
            or len(model.event_shape) > 1 and not images):
        raise InputError(
            f"--preset {args.preset} is for 28x28 images of {model.num_levels} levels "
            f"(uint8); {dataset.name} holds examples of shape {tuple(dataset.x.shape[1:])} with "
            f"{dataset.num_levels} levels.")


def _multiscale_shape(args, dataset):
    """The `(h, w, c)` events of `--flow multiscale`, or an error saying what it needs."""
    if dataset.image_shape is None:
        raise InputError(f"--flow multiscale needs images, (n, h, w) or (n, h, w, c) data; "
                         f"{dataset.name} holds vectors of {dataset.x.shape[1]} entries.")
    shape = tuple(dataset.image_shape) + ((1,) if len(dataset.image_shape) == 2 else ())
    side = 2 ** args.scales
    if shape[0] % side or shape[1] % side:
        raise InputError(f"--scales {args.scales} halves the sides {args.scales} times: the "
                         f"images' sides must be multiples of {side}; {dataset.name}'s images "
                         f"are {shape[0]}x{shape[1]} (try --scales 1).")
    return shape


def _build(args, dataset, num_classes):
    """The model, its optimiser, its event shape and the run's record, from the table of
    builders (`tfp_nice.cli.architectures.BUILDERS`)."""
    builder, kwargs = architectures.kwargs_from_args(args, dataset, num_classes)
    if builder == "multiscale":
        event_shape = _multiscale_shape(args, dataset)
    elif builder == "nice":
        event_shape = _event_shape(dataset, args.partition)
    elif builder in ("maf", "iaf"):
        event_shape = (int(dataset.x.shape[1]),)  # the flattened examples
    else:
        event_shape = None  # the preset's own
    model, optimizer = architectures.BUILDERS[builder](event_shape, **kwargs)
    if args.preset:
        _preset_fits(args, dataset, model)
    return model, optimizer, tuple(model.event_shape), architectures.record(builder, kwargs)


def train(args):
    dataset = load_dataset(args.data, args.num_points, args.num_levels, args.seed)
    out = pathlib.Path(args.out or os.path.join("runs", dataset.name))
    if out.exists() and not args.overwrite:
        raise InputError(f"--out {out} exists; pass --overwrite to replace it.")
    num_classes = None
    if args.labels is not None:
        labels, num_classes = load_labels(args.labels, args.data, len(dataset.x))
    # the rows of each part, so that the labels split with their examples
    train_rows, test_rows = train_test_split(np.arange(len(dataset.x)), args.test_split,
                                             args.seed)
    train_x, test_x = dataset.x[train_rows], dataset.x[test_rows]
    train_c = test_c = None
    if num_classes is not None:
        train_c, test_c = (one_hot(labels[rows], num_classes) for rows in (train_rows,
                                                                            test_rows))
    n_fit = len(train_x) - int(len(train_x) * args.validation_split)
    if n_fit < 1:
        raise InputError(f"{dataset.name} has {len(dataset.x)} examples: too few to split.")

    keras.utils.set_random_seed(args.seed)
    model, optimizer, event_shape, built = _build(args, dataset, num_classes)
    train_x = train_x.reshape((len(train_x),) + event_shape)
    test_x = test_x.reshape((len(test_x),) + event_shape)
    model.compile(optimizer)
    callbacks = []  # the model stops by itself after an epoch whose loss is not finite
    backup = out.parent / f".{out.name}.backup"
    history_csv = backup / "history.csv"
    initial_epoch = 0
    if args.resume:
        backup.mkdir(parents=True, exist_ok=True)
        initial_epoch, saved = latest_backup(backup)
        if saved is not None:
            print(f"resuming the interrupted run in {backup} after epoch {initial_epoch}",
                  flush=True)
            model = keras.models.load_model(saved)  # weights and optimizer state
        # The log is written before the backup at each epoch's end, so a run killed
        # between the two repeats that epoch rather than losing it.
        callbacks += [keras.callbacks.CSVLogger(str(history_csv), append=True),
                      EpochBackup(backup)]
    if args.patience > 0 and args.validation_split > 0:
        if getattr(model.optimizer, "use_ema", False):  # judge the averages fit will leave
            held = train_x[n_fit:] if train_c is None else (train_x[n_fit:], train_c[n_fit:])
            callbacks.insert(0, AveragedEarlyStopping(held, args.patience, args.batch_size))
        else:
            callbacks.append(keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=args.patience, restore_best_weights=True))
    kind = "NICE" if isinstance(model, NICE) else {"maf": "a MAF", "iaf": "an IAF"}.get(
        built["builder"], "a multi-scale flow")
    if num_classes is not None:
        kind += f" given the label ({num_classes} classes)"
    print(f"training {kind} on {dataset.name}: {len(train_x)} examples of shape "
          f"{event_shape} ({len(test_x)} held out for test)", flush=True)
    start = time.perf_counter()
    try:
        history = model.fit(train_x, train_c, epochs=args.epochs, batch_size=args.batch_size,
                            validation_split=args.validation_split, callbacks=callbacks,
                            verbose=_verbosity(args.verbose), initial_epoch=initial_epoch)
    except TrainingDataError as err:  # the model's own checks, run once, before training
        raise InputError(str(err).replace("batch_size", "--batch-size")) from None
    seconds = time.perf_counter() - start
    full_history = read_history(history_csv) if args.resume else history.history
    losses = full_history["loss"]
    if not np.all(np.isfinite(losses)):
        raise InputError("training diverged (the loss became NaN or inf); try a smaller "
                         "--learning-rate. Nothing was written.")

    n_val = len(train_x) - n_fit
    metrics = {
        "data": dataset.name,
        "event_shape": list(event_shape),
        "builder": built,
        "num_levels": dataset.num_levels,
        "num_classes": num_classes,
        "epochs": len(losses),
        "wall_time_seconds": seconds,
        "train": _scores(model, train_x[:n_fit], args.batch_size, _rows(train_c, None, n_fit)),
        "validation": _scores(model, train_x[n_fit:], args.batch_size,
                              _rows(train_c, n_fit, None)) if n_val else None,
        "test": _scores(model, test_x, args.batch_size, test_c),
        "history": {k: [float(v) for v in vals] for k, vals in full_history.items()},
        "arguments": {k: v for k, v in vars(args).items() if k != "typed"},
        "versions": _versions(),
    }
    with staged_dir(out, overwrite=args.overwrite) as tmp:
        model.save(tmp / "model.keras")
        export_saved_model(model, tmp / "saved_model")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        plots.loss_curves(full_history, tmp / "loss.png")
        many = dataset.x.shape[1] == 2
        if num_classes is None:
            samples = model.sample(1000 if many else 64, seed=args.seed).numpy()
        else:  # the same number of each class; for images a row of 8 per class
            per_class = max(1, (1000 if many else 8 * num_classes) // num_classes)
            drawn = model.sample(per_class if many else 8, seed=args.seed,
                                 context=np.eye(num_classes, dtype="float32")).numpy()
            samples = np.swapaxes(drawn, 0, 1).reshape((-1,) + drawn.shape[2:])
        if many and num_classes is None:
            plots.scatter_pair(test_x if len(test_x) else train_x, samples, tmp / "samples.png")
            plots.density_map(lambda g: model.log_prob(g).numpy(), dataset.x, tmp / "density.png")
        elif many:
            plots.scatter_pair(test_x if len(test_x) else train_x, samples, tmp / "samples.png")
        elif dataset.image_shape is not None:
            plots.samples_picture(samples.reshape(len(samples), -1), dataset.image_shape,
                                  tmp / "samples.png")

    if args.resume:
        shutil.rmtree(backup, ignore_errors=True)
    test = metrics["test"] or metrics["train"]
    which = "test" if metrics["test"] else "train"
    print(f"\n{which} NLL {test['nll']:.3f} nats/example, {test['bits_per_dim']:.4f} bits/dim "
          f"after {_count(len(losses), 'epoch')} ({seconds:.1f} s)")
    print(f"outputs in {out}/: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0


def _rows(context, start, stop):
    return None if context is None else context[start:stop]
