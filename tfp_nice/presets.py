"""Ready-made configurations from the papers."""

import collections

import keras
import numpy as np

from tfp_nice.data import MNIST_LEVELS, dequantize
from tfp_nice.models import NICE

__all__ = ["Preset", "nice_mnist"]

Preset = collections.namedtuple("Preset", ["model", "optimizer", "preprocess"])


def nice_mnist(rescaling_init="data", adam_beta_2=0.99, seed=0):
    """NICE's MNIST model and optimiser (Dinh et al. 2014, section 5.1 and appendix).

    * Model: 4 additive couplings with odd/even partitions, coupling networks
      of 5 hidden ReLU layers of 1000 units, the rescaling layer, a standard
      logistic prior, over 784-vectors.
    * Optimiser: the paper gives Adam with "learning rate 1e-3, momentum 0.9,
      beta2 = 0.01, lambda = 1, epsilon = 1e-4". Its beta2 and lambda follow
      the notation of the first Adam preprint, where beta is one minus the
      decay rate, so in Keras it is `Adam(1e-3, beta_1=0.9, beta_2=0.99,
      epsilon=1e-4)` (the default here). Passing `beta_2=0.01` literally is
      possible for comparison (`examples/mnist.py --adam-beta-2 0.01`).
    * Data: `preprocess(images, seed)` flattens uint8 images and dequantizes
      them as `(x + u) / 256`, the paper's `(x * 255 + u) / 256` for pixels
      already in `[0, 1]`.

    Args:
      rescaling_init: `"data"` (this library's default, which trains faster)
        or `"zeros"` (the paper's start).
      adam_beta_2: Keras's `beta_2` (see above).
      seed: seed of the model.

    Returns:
      `Preset(model, optimizer, preprocess)`; compile with
      `preset.model.compile(preset.optimizer)`.
    """
    model = NICE((784,), num_couplings=4, hidden_units=(1000,) * 5, partition="odd_even",
                 rescaling=True, prior="logistic", activation="relu", num_levels=MNIST_LEVELS,
                 rescaling_init=rescaling_init, seed=seed, name="nice_mnist")
    optimizer = keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=adam_beta_2, epsilon=1e-4)

    def preprocess(images, seed=None):
        images = np.asarray(images)
        return dequantize(images.reshape(len(images), -1), MNIST_LEVELS, seed=seed)

    return Preset(model, optimizer, preprocess)
