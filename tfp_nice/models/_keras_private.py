"""The one place that reads Keras attributes outside its public API.

Keras 3 has no public way to list every nested layer of a model, nor to read
an optimizer's moving averages of the weights (`use_ema=True`) before `fit`
writes them in. Both are read here and nowhere else;
`tests/test_keras_private.py` checks each against the installed Keras, so a
release that renames or changes one fails there, by name, instead of
misbehaving somewhere in `fit`.
"""

import keras

__all__ = ["all_layers_built", "has_moving_averages"]


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
