"""Ready-made configurations from the papers."""

from __future__ import annotations

import collections

import keras
import numpy as np

from tfp_nice.data import MNIST_LEVELS, dequantize
from tfp_nice.models import NICE, Flow
from tfp_nice.steps import multiscale_steps

__all__ = ["Preset", "affine_mnist", "glow_mnist", "nice_mnist"]

Preset = collections.namedtuple("Preset", ["model", "optimizer", "preprocess"])


def nice_mnist(rescaling_init: str = "data", adam_beta_2: float = 0.99,
               seed: int = 0) -> Preset:
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
    return Preset(model, optimizer, _mnist_preprocess)


def affine_mnist(seed: int = 0, num_classes: int | None = None) -> Preset:
    """The library's MNIST recipe: NICE's model made affine, measured to train fastest.

    On the benchmarks' split (MNIST's test set: 7,000 images to train, 1,000 to
    stop on, 2,000 held out; fresh dequantization noise every epoch, batch 256;
    `benchmarks/run.py`, section 7; 2 CPU cores), its held-out log-likelihood
    passed the NICE paper's 1980.5 nats after 33 s of training and reached 3148
    nats (2.21 bits/dim) after 3 minutes, where `nice_mnist()` peaked at 1664
    after 13. Past its peak it overfits (trained 30 minutes on 8,000 images
    without stopping: from 3166 down to 2929), so train it with early stopping
    on a validation slice: `tfp_nice.AveragedEarlyStopping(x_val, patience=10)`
    judges the averaged weights and leaves the best in (it stopped after 4
    minutes there). What it is:

    * Model: RealNVP's logit preprocessing (`logit_alpha=0.05`) first, then
      16 affine couplings with odd/even partitions, each coupling network 3
      hidden ReLU layers of 256 units, and before each coupling an ActNorm
      and a fixed random permutation (drawn from `seed`, saved with the model),
      NICE's rescaling (started from data) and a standard logistic prior, over
      784-vectors with values in `[0, 1]`. The logit's log-det is part of the
      flow's, so `log_prob` and bits/dim are in data space, comparable with
      `nice_mnist()` and the NICE paper's nats.
    * Optimiser: `Adam(1e-3, beta_1=0.9, beta_2=0.99, epsilon=1e-4)` (NICE's)
      with an exponential moving average of the weights (`use_ema=True`,
      `ema_momentum=0.99`): `fit` leaves the averaged weights in the model;
      `tfp_nice.averaged_weights(model)` scores them during training.
    * Data: `preprocess(images, seed)` flattens uint8 images and dequantizes
      them once as `(x + u) / 256`; for fresh noise every epoch (what the
      measurements used), train on
      `tfp_nice.dequantized_batches(images.reshape(len(images), -1), 256, 256)`.

    Args:
      seed: seed of the model.
      num_classes: `None`, or a number of classes `K`: a class-conditional
        model `p(x | label)` whose coupling networks see the one-hot label
        (context rows of shape `(K,)`).

    Returns:
      `Preset(model, optimizer, preprocess)`; compile with
      `preset.model.compile(preset.optimizer)`.
    """
    model = NICE((784,), num_couplings=16, hidden_units=(256,) * 3, partition="odd_even",
                 coupling="affine", actnorm=True, permutation="random", rescaling=True,
                 prior="logistic", activation="relu", num_levels=MNIST_LEVELS, logit_alpha=0.05,
                 seed=seed, context_shape=_classes(num_classes), name="affine_mnist")
    optimizer = keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.99, epsilon=1e-4,
                                      use_ema=True, ema_momentum=0.99)
    return Preset(model, optimizer, _mnist_preprocess)


def glow_mnist(seed: int = 0, steps_per_scale: int = 8, hidden_channels: int = 64,
               learning_rate: float = 2e-3, warmup_steps: int = 0, use_ema: bool = True,
               num_classes: int | None = None) -> Preset:
    """A multi-scale convolutional flow for 28x28 images (RealNVP's layout, Glow's steps).

    * Model (`tfp_nice.multiscale_steps`): RealNVP's logit preprocessing
      (`alpha = 0.05`), then two scales over `(28, 28, 1)` images: a squeeze
      to `(14, 14, 4)`, `steps_per_scale` Glow steps (per-channel ActNorm,
      invertible 1x1 convolution, affine channel coupling whose network is
      `hidden_channels`-wide 3x3 -> 1x1 -> 3x3 convolutions, the last at
      zero), a factor-out of 2 channels with Glow's learned prior, a squeeze to
      `(7, 7, 8)` and `steps_per_scale` more steps; a standard normal prior
      over the 784 latents. 152k trainable weights with the defaults (76k
      with `steps_per_scale=4`).
    * Optimiser: `Adam(learning_rate)` with an exponential moving average of
      the weights (`use_ema=True`, `ema_momentum=0.99`), like `affine_mnist()`;
      with `warmup_steps`, the learning rate rises linearly from 0 to
      `learning_rate` over that many batches (Keras' `CosineDecay` with
      `alpha=1`: no decay after).
    * Data: `preprocess(images, seed)` shapes uint8 images as `(N, 28, 28, 1)`
      and dequantizes them once as `(x + u) / 256`; for fresh noise every
      epoch, train on `tfp_nice.dequantized_batches(images.reshape(-1, 28, 28,
      1), 256, 64)`.

    Measured on the benchmarks' split (section 7's protocol: 7,000 images to
    train, 1,000 to stop on, 2,000 held out; batch 64, 2 CPU cores;
    `benchmarks/README.md`, "Multi-scale image flows"): 3402 held-out nats
    (1.74 bits/dim) after 155 s of training, where `affine_mnist()` holds
    3148 (2.21), and 3585 (1.40 bits/dim) after 30 minutes, still improving.
    With `steps_per_scale=4`, 3505 (1.55) after 30 minutes on a slower day of
    the same machines. The first epoch also pays for tracing the graph (25-60
    s).

    Args:
      seed: seed of the model (the 1x1 convolutions' starts, the data start's
        rows).
      steps_per_scale: Glow steps per scale.
      hidden_channels: width of the coupling networks.
      learning_rate: Adam's learning rate.
      warmup_steps: batches of linear learning-rate warm-up (0: none).
      use_ema: average the weights (Keras' `use_ema`); `fit` leaves the
        averages in the model.
      num_classes: `None`, or a number of classes `K`: a class-conditional
        flow `p(x | label)` (context rows of shape `(K,)`, one-hot labels) whose
        coupling networks see the label as constant feature maps and whose
        learned prior of the exiting channels depends on it.

    Returns:
      `Preset(model, optimizer, preprocess)`; compile with
      `preset.model.compile(preset.optimizer)`.
    """
    if isinstance(warmup_steps, bool) or int(warmup_steps) != warmup_steps or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a whole number >= 0, got {warmup_steps!r}")
    steps = multiscale_steps((28, 28, 1), num_scales=2, steps_per_scale=steps_per_scale,
                             hidden_channels=(hidden_channels, hidden_channels),
                             coupling="affine", learned_prior=True, logit_alpha=0.05,
                             context_shape=_classes(num_classes), seed=seed)
    model = Flow(steps, prior="normal", num_levels=MNIST_LEVELS, seed=seed,
                 context_shape=_classes(num_classes), name="glow_mnist")
    rate = learning_rate
    if warmup_steps:
        rate = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=1, alpha=1.0, warmup_target=learning_rate,
            warmup_steps=int(warmup_steps))
    optimizer = keras.optimizers.Adam(rate, use_ema=bool(use_ema), ema_momentum=0.99)
    return Preset(model, optimizer, _image_preprocess)


def _classes(num_classes):
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be a whole number >= 2, got {num_classes!r}")
    return (int(num_classes),)


def _image_preprocess(images, seed=None):
    images = np.asarray(images)
    return dequantize(images.reshape(len(images), 28, 28, 1), MNIST_LEVELS, seed=seed)


def _mnist_preprocess(images, seed=None):
    images = np.asarray(images)
    return dequantize(images.reshape(len(images), -1), MNIST_LEVELS, seed=seed)
