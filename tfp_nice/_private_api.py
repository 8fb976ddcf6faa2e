"""The one place that reads Keras's and TFP's attributes outside their public APIs.

* Keras 3 has no public way to list every nested layer of a model, nor to read
  an optimizer's moving averages of the weights (`use_ema=True`) before `fit`
  writes them in, nor to get the `tf.Variable` behind a Keras variable without
  the autocast scope a mixed-precision layer may have entered.
* TFP has no public way for a bijector to hand its cache the log-determinant
  together with the result computed in the same pass (`tfb.FFJORD` does it with
  a cache class of TFP's internals); its class is read here from that public
  bijector, never imported from TFP's internal modules.

Each is read here and nowhere else; `tests/test_private_api.py` checks each
against the installed Keras and TFP, so a release that renames or changes one
fails there, by name, instead of misbehaving somewhere in `fit` or `log_prob`.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = ["all_layers_built", "backing_variable", "has_moving_averages",
           "log_det_with_result_cache"]


def all_layers_built(model: keras.Model) -> bool:
    """Whether the model and every layer nested in it is built (all weights exist).

    Reads `keras.Model._flatten_layers`, which walks the nested layers.
    """
    return all(layer.built for layer in model._flatten_layers())


def has_moving_averages(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether a built optimizer holds moving averages of the weights.

    Reads `_model_variables_moving_average`, the list of averages a Keras
    optimizer built with `use_ema=True` keeps (empty before `build`).
    """
    return bool(getattr(optimizer, "_model_variables_moving_average", None))


def backing_variable(variable: keras.Variable) -> tf.Variable | None:
    """The `tf.Variable` behind a Keras variable (`None` if there is none).

    Reads `_value` first, which an autocast scope leaves alone (`.value` is the
    public fallback).
    """
    value = getattr(variable, "_value", None)
    if not isinstance(value, tf.Variable):
        value = variable.value
    return value if isinstance(value, tf.Variable) else None


def log_det_with_result_cache(forward_name: str, inverse_name: str) -> Any:
    """A bijector cache that stores the attributes (the log-dets) that the methods
    `forward_name` and `inverse_name` return beside the result, as `tfb.FFJORD`'s.

    Reads the class of `tfb.FFJORD._cache`.
    """
    cache_class = type(tfp.bijectors.FFJORD.__dict__["_cache"])
    return cache_class(forward_name=forward_name, inverse_name=inverse_name)
