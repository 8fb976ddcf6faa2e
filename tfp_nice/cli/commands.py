"""The commands of `tfp-nice` (imported once the arguments are parsed: TensorFlow loads here)."""

import json
import math
import os
import pathlib

import numpy as np
import tensorflow as tf

from tfp_nice.cli import plots
from tfp_nice.cli.inputs import (
    InputError,
    class_count,
    labels_context,
    load_dataset,
    load_model,
    one_hot,
)
from tfp_nice.cli.train import train
from tfp_nice.data import bits_per_dim
from tfp_nice.models.inpainting import hidden_mask

__all__ = ["COMMANDS"]


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
