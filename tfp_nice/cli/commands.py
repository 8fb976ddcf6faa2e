"""The commands of `tfp-nice` (imported once the arguments are parsed: TensorFlow loads here)."""

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
from tfp_nice.bijectors.spline_coupling import DEFAULT_BINS, DEFAULT_TAIL_BOUND
from tfp_nice.cli import plots
from tfp_nice.cli.inputs import (
    InputError,
    class_count,
    labels_context,
    load_dataset,
    load_labels,
    load_model,
    one_hot,
)
from tfp_nice.cli.resume import EpochBackup, latest_backup, read_history
from tfp_nice.data import bits_per_dim, train_test_split
from tfp_nice.export import export_saved_model
from tfp_nice.models import NICE, Flow
from tfp_nice.models.inpainting import hidden_mask
from tfp_nice.models.training import AveragedEarlyStopping, TrainingDataError
from tfp_nice.steps import multiscale_steps, walk

__all__ = ["COMMANDS"]


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


# The flags a preset fixes, with the name the error message gives them.
_PRESET_FIXES = {"flow": "--flow", "scales": "--scales", "steps_per_scale": "--steps-per-scale",
                 "couplings": "--couplings", "hidden": "--hidden", "partition": "--partition",
                 "coupling": "--coupling", "num_bins": "--num-bins",
                 "tail_bound": "--tail-bound", "actnorm": "--actnorm",
                 "permutation": "--permutation", "rescaling_init": "--rescaling-init",
                 "prior": "--prior", "no_rescaling": "--no-rescaling",
                 "learning_rate": "--learning-rate"}


def _preset(args, dataset, num_classes=None):
    """The model and optimiser of `--preset`, after checking it fits the data and flags."""
    from tfp_nice import presets

    # Refused when typed, whatever the value: a value equal to the default is still the
    # user's request, and the preset would silently override it.
    changed = [flag for key, flag in _PRESET_FIXES.items() if key in args.typed]
    if changed:
        raise InputError(f"--preset {args.preset} sets the model and optimiser; drop "
                         f"{', '.join(changed)}.")
    options = {"seed": args.seed}
    if num_classes is not None:
        if args.preset == "nice_mnist":
            raise InputError("--preset nice_mnist is NICE's unconditional model; for "
                             "--labels use affine_mnist or glow_mnist.")
        options["num_classes"] = num_classes
    model, optimizer, _ = getattr(presets, args.preset)(**options)
    size = math.prod(model.event_shape)
    images = dataset.image_shape is not None and math.prod(dataset.image_shape) == size
    if (dataset.x.shape[1] != size or dataset.num_levels != model.num_levels
            or len(model.event_shape) > 1 and not images):
        raise InputError(
            f"--preset {args.preset} is for 28x28 images of {model.num_levels} levels "
            f"(uint8); {dataset.name} holds examples of shape {tuple(dataset.x.shape[1:])} with "
            f"{dataset.num_levels} levels.")
    return model, optimizer


# The options of one --flow only, with the name the error message gives them.
_NICE_ONLY = {"couplings": "--couplings", "partition": "--partition", "actnorm": "--actnorm",
              "permutation": "--permutation", "rescaling_init": "--rescaling-init",
              "no_rescaling": "--no-rescaling"}
_MULTISCALE_ONLY = {"scales": "--scales", "steps_per_scale": "--steps-per-scale"}


def _spline_options(args, coupling):
    """`--num-bins` and `--tail-bound` for a spline coupling; an error for another."""
    given = {key: getattr(args, key) for key in ("num_bins", "tail_bound")
             if key in args.typed}
    if coupling != "spline":
        if given:
            flags = ", ".join("--" + key.replace("_", "-") for key in given)
            raise InputError(f"{flags} shape spline couplings; add --coupling spline or drop "
                             "them.")
        return {}
    return {"num_bins": args.num_bins or DEFAULT_BINS,
            "tail_bound": args.tail_bound or DEFAULT_TAIL_BOUND}


def _multiscale(args, dataset, context_shape=None):
    """The flow of `--flow multiscale` over the data's images."""
    nice_only = [flag for key, flag in _NICE_ONLY.items() if key in args.typed]
    if nice_only:
        raise InputError(f"--flow multiscale builds its own steps: drop {', '.join(nice_only)} "
                         "(its options are --scales, --steps-per-scale, --hidden, --coupling "
                         "and --prior).")
    if dataset.image_shape is None:
        raise InputError(f"--flow multiscale needs images, (n, h, w) or (n, h, w, c) data; "
                         f"{dataset.name} holds vectors of {dataset.x.shape[1]} entries.")
    shape = tuple(dataset.image_shape) + ((1,) if len(dataset.image_shape) == 2 else ())
    side = 2 ** args.scales
    if shape[0] % side or shape[1] % side:
        raise InputError(f"--scales {args.scales} halves the sides {args.scales} times: the "
                         f"images' sides must be multiples of {side}; {dataset.name}'s images "
                         f"are {shape[0]}x{shape[1]} (try --scales 1).")
    # Discrete data arrive dequantized into [0, 1): the logit step spreads them out.
    logit = 0.05 if dataset.num_levels is not None else None
    architecture = {"flow": "multiscale", "scales": args.scales,
                    "steps_per_scale": args.steps_per_scale, "hidden_channels": args.hidden,
                    "coupling": args.coupling or "affine", "prior": args.prior or "normal",
                    "logit_alpha": logit}
    architecture.update(_spline_options(args, architecture["coupling"]))
    steps = multiscale_steps(shape, num_scales=args.scales,
                             steps_per_scale=args.steps_per_scale,
                             hidden_channels=tuple(args.hidden),
                             coupling=architecture["coupling"], logit_alpha=logit,
                             context_shape=context_shape, seed=args.seed,
                             num_bins=architecture.get("num_bins"),
                             tail_bound=architecture.get("tail_bound"))
    model = Flow(steps, prior=architecture["prior"], num_levels=dataset.num_levels,
                 seed=args.seed, context_shape=context_shape, name="multiscale")
    return model, architecture, shape


def train(args):
    dataset = load_dataset(args.data, args.num_points, args.num_levels, args.seed)
    out = pathlib.Path(args.out or os.path.join("runs", dataset.name))
    if out.exists() and not args.overwrite:
        raise InputError(f"--out {out} exists; pass --overwrite to replace it.")
    num_classes = context_shape = None
    if args.labels is not None:
        labels, num_classes = load_labels(args.labels, args.data, len(dataset.x))
        context_shape = (num_classes,)
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
    if args.preset:
        model, optimizer = _preset(args, dataset, num_classes)
        event_shape = tuple(model.event_shape)
        if isinstance(model, NICE):
            architecture = {"preset": args.preset, "partition": model.partition,
                            "coupling": model.coupling, "actnorm": model.actnorm,
                            "permutation": model.permutation, "rescaling": model.rescaling,
                            "rescaling_init": model.rescaling_init,
                            "logit_alpha": model.logit_alpha}
        else:
            architecture = {"preset": args.preset, "flow": "multiscale",
                            "steps": [step.name for step in walk(model.steps)]}
    elif args.flow == "multiscale":
        model, architecture, event_shape = _multiscale(args, dataset, context_shape)
        optimizer = keras.optimizers.Adam(args.learning_rate)
    else:
        multiscale_only = [flag for key, flag in _MULTISCALE_ONLY.items() if key in args.typed]
        if multiscale_only:
            raise InputError(f"--flow nice does not take {', '.join(multiscale_only)} (options "
                             "of --flow multiscale).")
        event_shape = _event_shape(dataset, args.partition)
        architecture = {
            "partition": args.partition, "coupling": args.coupling or "additive",
            "actnorm": args.actnorm,
            "permutation": None if args.permutation == "none" else args.permutation,
            "rescaling": not args.no_rescaling, "rescaling_init": args.rescaling_init,
        }
        architecture.update(_spline_options(args, architecture["coupling"]))
        model = NICE(event_shape, num_couplings=args.couplings,
                     hidden_units=tuple(args.hidden), prior=args.prior or "logistic",
                     num_levels=dataset.num_levels, seed=args.seed,
                     context_shape=context_shape, **architecture)
        optimizer = keras.optimizers.Adam(args.learning_rate)
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
    kind = "NICE" if isinstance(model, NICE) else "a multi-scale flow"
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
        "architecture": architecture,
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


def _npy_out(path):
    """`--out` of `sample` and `inpaint`, checked before any work."""
    out = pathlib.Path(path)
    if out.suffix != ".npy":
        raise InputError(f"--out must end in .npy, got {out}.")
    return out


def _write_npy(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def sample(args):
    out = _npy_out(args.out)
    kind, model, info = load_model(args.model)
    classes = class_count(info, args.model)
    context = {}
    if classes is None and args.label is not None:
        raise InputError(f"{args.model} is not class-conditional (trained without --labels); "
                         "drop --label.")
    if classes is not None:
        if args.label is None or not 0 <= args.label < classes:
            given = "no --label" if args.label is None else f"--label {args.label}"
            raise InputError(f"{args.model} is class-conditional: give --label K with K in "
                             f"0..{classes - 1} (got {given}).")
        context["context"] = one_hot([args.label], classes,
                                     tf.as_dtype(info["dtype"]).as_numpy_dtype)

    if kind == "keras":
        seed = None if args.seed < 0 else tf.constant([args.seed % (2**31 - 1), 0], tf.int32)
        x = model.sample(args.num_samples, temperature=args.temperature, seed=seed,
                         **context).numpy()
    else:
        dtype = tf.as_dtype(info["dtype"])
        x = model.signatures["sample"](
            num_samples=tf.constant(args.num_samples, tf.int32),
            temperature=tf.constant(args.temperature, dtype),
            seed=tf.constant(args.seed, tf.int64), **context)["x"].numpy()
    if classes is not None:
        x = x[:, 0]  # the one row of the label
    _write_npy(out, x)
    flat = x.reshape(len(x), -1)
    d = flat.shape[1]
    image_shape = info["event_shape"] if len(info["event_shape"]) == 3 else (
        (math.isqrt(d),) * 2 if math.isqrt(d) ** 2 == d and d > 4 else None)
    png = out.with_suffix(".png")
    drew = plots.samples_picture(flat, image_shape, png,
                                 title=f"samples at temperature {args.temperature:g}"
                                 + ("" if classes is None else f", label {args.label}"))
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
    context = labels_context(args, info, len(x))
    if kind == "keras":
        log_p = model.predict(x if context is None else {"x": x, "context": context},
                              batch_size=256, verbose=0)
    else:
        def served(i):
            given = {"x": tf.constant(x[i:i + 1024])}
            if context is not None:
                given["context"] = tf.constant(context[i:i + 1024])
            return model.signatures["log_prob"](**given)["log_prob"].numpy()
        log_p = np.concatenate([served(i) for i in range(0, len(x), 1024)])
    nll = -float(np.mean(log_p))
    bpd = float(bits_per_dim(nll, expected, info["num_levels"]))
    print(json.dumps({"data": dataset.name, "count": len(x), "nll": nll, "bits_per_dim": bpd}))
    return 0


def inpaint(args):
    out = _npy_out(args.out)
    kind, model, info = load_model(args.model)
    if kind != "keras":
        raise InputError("inpaint needs a model.keras file: a SavedModel serves no gradients.")
    dataset = load_dataset(args.data, 10000, info["num_levels"], args.seed, float_levels=False)
    size = math.prod(info["event_shape"])
    if dataset.x.shape[1] != size:
        raise InputError(f"{args.data} has {dataset.x.shape[1]} values per example but the "
                         f"model expects {size}.")
    context = labels_context(args, info, len(dataset.x))
    x = dataset.x[: args.num_examples]
    given = {} if context is None else {"context": context[: args.num_examples]}
    try:
        observed = hidden_mask(args.hide, dataset.image_shape, size, args.seed)
    except ValueError as err:
        raise InputError(str(err).replace("hide=", "--hide ").replace("'", "")) from None
    start = np.where(observed, x, dataset.x.mean(0)).astype(x.dtype)
    shape = (len(x),) + tuple(info["event_shape"])
    filled = model.inpaint(start.reshape(shape), observed.reshape(info["event_shape"]),
                           num_steps=args.num_steps,
                           step_size=lambda i: args.step_scale / (100.0 + i),
                           noise=args.noise, seed=args.seed, **given).numpy().reshape(len(x), -1)
    _write_npy(out, filled)
    hidden = ~observed
    report = {
        "count": int(len(x)),
        "mse_mean_filling": float(np.mean((start - x)[:, hidden] ** 2)),
        "mse_inpainted": float(np.mean((filled - x)[:, hidden] ** 2)),
        "log_prob_before": float(np.mean(model.log_prob(start.reshape(shape), **given))),
        "log_prob_after": float(np.mean(model.log_prob(filled.reshape(shape), **given))),
    }
    if dataset.image_shape is not None:
        rows = np.concatenate([x, np.where(observed, x, 0.0), filled], axis=0)
        plots.image_grid(rows, dataset.image_shape, out.with_suffix(".png"), columns=len(x),
                         title="rows: original, observed part, inpainted")
    print(json.dumps(report))
    return 0


COMMANDS = {"train": train, "sample": sample, "evaluate": evaluate, "inpaint": inpaint}
