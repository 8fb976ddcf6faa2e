"""SavedModel export: plain tensors in and out, served by TensorFlow alone."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import tensorflow as tf

from tfp_nice._fs import staged_dir
from tfp_nice._version import __version__

__all__ = ["METADATA_FILE", "SIGNATURES", "export_saved_model"]

SIGNATURES = ("serving_default", "log_prob", "sample", "encode", "decode", "metadata")
METADATA_FILE = "tfp_nice.json"  # in the SavedModel's assets.extra/


def _latent_shape(model):
    return tuple(getattr(model, "latent_shape", model.event_shape))


def _context_shape(model):
    shape = getattr(model, "context_shape", None)
    return None if shape is None else tuple(shape)


def _metadata(model):
    num_dims = int(model.num_dims)
    levels = model.num_levels
    context_shape = _context_shape(model)
    if context_shape is None:
        signatures = {
            "log_prob": "x [batch, *event_shape] -> log_prob [batch] (nats)",
            "sample": "num_samples int32 [], temperature [], seed int64 [] (< 0: fresh "
                      "randomness) -> x [num_samples, *event_shape]",
            "encode": "x [batch, *event_shape] (data) -> z [batch, *latent_shape] (latent), "
                      "NICE's f",
            "decode": "z [batch, *latent_shape] (latent) -> x [batch, *event_shape] (data), "
                      "g = f^-1",
        }
    else:
        signatures = {
            "log_prob": "x [batch, *event_shape], context [batch, *context_shape] -> "
                        "log_prob [batch] (nats), log p(x_i | context_i)",
            "sample": "num_samples int32 [], temperature [], seed int64 [] (< 0: fresh "
                      "randomness), context [rows, *context_shape] -> "
                      "x [num_samples, rows, *event_shape] (x[:, i] given context_i)",
            "encode": "x [batch, *event_shape] (data), context [batch, *context_shape] -> "
                      "z [batch, *latent_shape] (latent), NICE's f",
            "decode": "z [batch, *latent_shape] (latent), context [batch, *context_shape] "
                      "-> x [batch, *event_shape] (data), g = f^-1",
        }
    signatures["metadata"] = "no input -> the fields of this file as tensors"
    return {
        "format": "tfp_nice SavedModel",
        "tfp_nice_version": __version__,
        "model": type(model).__name__,
        "event_shape": list(model.event_shape),
        "latent_shape": list(_latent_shape(model)),
        "dtype": tf.as_dtype(model.flow_dtype).name,
        "prior": model.prior if isinstance(model.prior, str) else type(model.prior).__name__,
        "num_dims": num_dims,
        "num_levels": levels,
        # bits/dim = (nll_nats + bits_per_dim_offset_nats) * bits_per_dim_scale
        "bits_per_dim_offset_nats": num_dims * math.log(levels) if levels else 0.0,
        "bits_per_dim_scale": 1.0 / (num_dims * math.log(2.0)),
        # null (JSON) for an unconditional flow; the metadata signature gives [] then
        "context_shape": None if context_shape is None else list(context_shape),
        "signatures": signatures,
    }


class _Server(tf.Module):
    """The exported object: tracks the model's variables and its serving functions."""

    def __init__(self, model, meta):
        super().__init__(name="tfp_nice_server")
        # Keras 3 variables are not TF trackables; tracking the tf.Variables behind
        # them is what lets graph-mode servers (saved_model_cli, TF Serving) find them.
        self.model_variables = [w.value for w in model.weights]
        event_shape = tuple(model.event_shape)
        latent_shape = _latent_shape(model)
        dtype = tf.as_dtype(model.flow_dtype)

        def checked(t, name, shape=event_shape):
            # A signature called with a tensor of another shape, even another rank,
            # runs (seen), and the graph is traced for the signature's rank, so the
            # rank cannot be tested on its own: the dimensions after the batch are
            # padded with a sentinel and compared with the event shape plus it.
            rank = len(shape)
            dims = tf.concat([tf.shape(t)[1:], tf.fill([rank + 1], -7)], 0)[: rank + 1]
            ok = tf.reduce_all(tf.equal(dims, list(shape) + [-7]))
            expected = f"[batch, {', '.join(str(d) for d in shape)}] {dtype.name}"
            message = f"{name} must have shape {expected}; got shape"
            with tf.control_dependencies([tf.debugging.Assert(ok, [message, tf.shape(t)])]):
                return tf.identity(t)

        data_spec = tf.TensorSpec((None,) + event_shape, dtype, name="x")
        latent_spec = tf.TensorSpec((None,) + latent_shape, dtype, name="z")
        sample_specs = [
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], dtype, name="temperature"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]

        def sample_checks(num_samples, temperature):
            return [
                tf.debugging.Assert(num_samples >= 0,
                                    ["num_samples must be >= 0; got", num_samples]),
                tf.debugging.Assert(
                    tf.logical_and(temperature > 0, tf.math.is_finite(temperature)),
                    ["temperature must be a finite float > 0; got", temperature]),
            ]

        def stateless_seed(seed):
            # A random op alone repeats itself in every process that loads the
            # model when a global seed was set at export (its op seed is frozen
            # in the graph); the clock tells processes apart, the op tells calls.
            clock = tf.bitcast(tf.timestamp(), tf.int32)
            fresh = tf.bitwise.bitwise_xor(
                clock, tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32))
            given = tf.stack([tf.cast(seed % (2**31 - 1), tf.int32), 0])
            return tf.where(seed >= 0, given, fresh)

        context_shape = _context_shape(model)
        if context_shape is None:
            @tf.function(input_signature=[data_spec])
            def log_prob(x):
                return {"log_prob": model.log_prob(checked(x, "x"))}

            @tf.function(input_signature=[data_spec])
            def encode(x):
                return {"z": model.encode(checked(x, "x"))}

            @tf.function(input_signature=[latent_spec])
            def decode(z):
                return {"x": model.decode(checked(z, "z", latent_shape))}

            @tf.function(input_signature=sample_specs)
            def sample(num_samples, temperature, seed):
                with tf.control_dependencies(sample_checks(num_samples, temperature)):
                    stateless = stateless_seed(seed)
                # the model's own draw, as Flow.sample
                return {"x": model.sample(num_samples, temperature, stateless)}
        else:
            context_spec = tf.TensorSpec((None,) + context_shape, dtype, name="context")

            def given(c, t=None, what="x"):
                # the context's shape, its finiteness and its rows (one per row of t)
                c = checked(c, "context", context_shape)
                checks = [tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(c)),
                                              ["the context holds NaN or inf"])]
                if t is not None:
                    rows, want = tf.shape(c)[0], tf.shape(t)[0]
                    checks.append(tf.debugging.Assert(tf.equal(rows, want), [
                        "give one context row per row of", what, "; got context rows",
                        rows, "for rows", want]))
                with tf.control_dependencies(checks):
                    return tf.identity(c)

            @tf.function(input_signature=[data_spec, context_spec])
            def log_prob(x, context):
                x = checked(x, "x")
                return {"log_prob": model.log_prob(x, context=given(context, x))}

            @tf.function(input_signature=[data_spec, context_spec])
            def encode(x, context):
                x = checked(x, "x")
                return {"z": model.encode(x, context=given(context, x))}

            @tf.function(input_signature=[latent_spec, context_spec])
            def decode(z, context):
                z = checked(z, "z", latent_shape)
                return {"x": model.decode(z, context=given(context, z, "z"))}

            @tf.function(input_signature=sample_specs + [context_spec])
            def sample(num_samples, temperature, seed, context):
                c = given(context)
                with tf.control_dependencies(sample_checks(num_samples, temperature)):
                    stateless = stateless_seed(seed)
                # the model's own draw: n per row, [:, i] given row i, as Flow.sample
                return {"x": model.sample(num_samples, temperature, stateless, context=c)}

        @tf.function(input_signature=[])
        def metadata():
            return {
                "event_shape": tf.constant(meta["event_shape"], tf.int64),
                "latent_shape": tf.constant(meta["latent_shape"], tf.int64),
                "dtype": tf.constant(meta["dtype"]),
                "prior": tf.constant(meta["prior"]),
                "tfp_nice_version": tf.constant(meta["tfp_nice_version"]),
                "num_levels": tf.constant(meta["num_levels"] or 0, tf.int64),
                "bits_per_dim_offset_nats": tf.constant(meta["bits_per_dim_offset_nats"],
                                                        tf.float64),
                "bits_per_dim_scale": tf.constant(meta["bits_per_dim_scale"], tf.float64),
                "context_shape": tf.constant(meta["context_shape"] or [], tf.int64),
            }

        part_names = getattr(model, "part_names", None)
        if part_names is not None and context_shape is None:
            # A surrogate of a structured target (tn.vi): its draws in the target's parts.
            @tf.function(input_signature=sample_specs)
            def sample_parts(num_samples, temperature, seed):
                with tf.control_dependencies(sample_checks(num_samples, temperature)):
                    stateless = stateless_seed(seed)
                rows = model.sample(num_samples, temperature, stateless)
                return dict(zip(part_names, tf.nest.flatten(model.unflatten(rows))))

            self.sample_parts = sample_parts
        self.log_prob = log_prob
        self.encode = encode
        self.decode = decode
        self.sample = sample
        self.metadata = metadata
        self.signature_map = {
            "serving_default": log_prob,
            "log_prob": log_prob,
            "sample": sample,
            "encode": encode,
            "decode": decode,
            "metadata": metadata,
        }
        if part_names is not None and context_shape is None:
            self.signature_map["sample_parts"] = sample_parts


def export_saved_model(model: Any, path: str | os.PathLike, overwrite: bool = False) -> dict:
    """Writes `model` as a SavedModel that TensorFlow alone can serve.

    Signatures (inputs and outputs are plain tensors; `*E` is the event shape):

    * `serving_default`, `log_prob`: `x [None, *E]` -> `log_prob [None]` (nats);
    * `sample`: `num_samples` int32 scalar, `temperature` scalar of the model's
      dtype, `seed` int64 scalar (a seed >= 0 repeats its samples; < 0 draws
      fresh ones) -> `x [num_samples, *E]`;
    * `encode` (data -> latent, NICE's `f`): `x` -> `z [None, *L]` (`L` the
      latent shape, the last step's output shape); `decode`: `z` -> `x`;
    * `sample_parts` (a `tn.vi` surrogate of a structured target): as `sample`, ->
      the draws in the target's parts, one output per part (its name; `part_<i>` for a
      list's, `x` for a target with one event);
    * `metadata`: no input -> event shape, latent shape, dtype, prior, package version,
      `num_levels` (0 for continuous data) and the bits/dim constants:
      `bits/dim = (nll + bits_per_dim_offset_nats) * bits_per_dim_scale`,
      and `context_shape` (`[]` for an unconditional flow).

    A conditional flow's signatures take `context [None, *C]` (`C` its
    `context_shape`, the model's dtype) beside their input, one row per row:
    `log_prob(x, context)`, `encode(x, context)`, `decode(z, context)`; and
    `sample(num_samples, temperature, seed, context)` draws `num_samples` per
    context row, `x [num_samples, rows, *E]` (`x[:, i]` given row `i`, as
    `Flow.sample`). A context of the wrong shape, with NaN or inf, or with
    another number of rows than `x` fails with an error that says so.

    The same metadata is written as JSON to `assets.extra/tfp_nice.json`.
    Inputs of the wrong shape fail with an error naming the expected shape and
    dtype. Loaded with plain `tf.saved_model.load`, the signatures called as
    they are (`served.signatures["log_prob"](x=x)`) are the fastest way to
    use it from Python; the object's `log_prob`, `encode`, `decode`, `sample`
    and `metadata` are callable too.

    The export is written to a temporary folder beside `path` and moved into
    place when complete, so a crash never leaves a half-written SavedModel at
    `path`.

    Args:
      model: a `tfp_nice.Flow` (or `NICE`) model (built at construction; a model loaded
        from `.keras` or trained under a `tf.distribute` strategy works too).
      path: target folder.
      overwrite: replace an existing `path`; otherwise an existing `path`
        raises `FileExistsError`.

    Returns:
      The metadata dict.
    """
    for attr in ("event_shape", "log_prob", "encode", "decode", "base_distribution",
                 "flow_dtype"):
        if not hasattr(model, attr):
            raise TypeError(
                f"export_saved_model needs a tfp_nice model; got {type(model).__name__} "
                f"without {attr!r}."
            )
    if not getattr(model, "built", False) or not model.weights:
        raise ValueError("The model has no weights yet; build it before exporting.")
    meta = _metadata(model)
    server = _Server(model, meta)
    with staged_dir(path, overwrite=overwrite) as tmp:
        tf.saved_model.save(server, str(tmp), signatures=dict(server.signature_map))
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta
