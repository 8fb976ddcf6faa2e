"""NICE's inpainting (arXiv 1410.8516, section 5.2) and the masks that hide data."""

import numpy as np
import tensorflow as tf

from tfp_nice._choices import HIDE
from tfp_nice._validation import check_choice, check_int, check_positive_float
from tfp_nice.models._context import as_context
from tfp_nice.models._inputs import as_flow_input

__all__ = ["HIDE", "SCHEDULES", "hidden_mask", "inpaint"]

# Step schedules of `NICE.inpaint` by name: the step size of step i (0-based).
SCHEDULES = {
    # Made for data in [0, 1]: on digits it lowers the hidden pixels' error below
    # mean filling and raises log p (tests/test_numbers.py).
    "default": lambda i: 0.1 / (100.0 + i),
    # NICE's own (arXiv 1410.8516, section 5.2); it overshoots on data in [0, 1].
    "paper": lambda i: 10.0 / (100.0 + i),
}


def inpaint(model, x, observed_mask, num_steps=500, step_size=None, noise=1.0,
            clip=(0.0, 1.0), seed=None, context=None):
    """`Flow.inpaint` for any flow (its public `log_prob`, `flow_dtype`, `dtype_policy`
    and context attributes): see its docstring for the algorithm, the schedules and the
    arguments; `context` (a conditional flow's) is held fixed."""
    x = as_flow_input(x, model.flow_dtype, model.dtype_policy.name, "x")
    if context is not None:
        context = as_context(model, context, x)
    observed = tf.convert_to_tensor(observed_mask)
    if observed.dtype != tf.bool:
        raise TypeError(f"observed_mask must be boolean, got {observed.dtype.name}.")
    try:
        observed = tf.broadcast_to(observed, tf.shape(x))
    except (ValueError, tf.errors.InvalidArgumentError) as err:
        raise ValueError(f"observed_mask of shape {tuple(observed_mask.shape)} does not "
                         f"broadcast to x of shape {tuple(x.shape)}.") from err
    num_steps = check_int(num_steps, "num_steps")
    if step_size is None:
        step_size = "default"
    if isinstance(step_size, str):
        step_size = SCHEDULES[check_choice(step_size, tuple(SCHEDULES), "step_size")]
    elif not callable(step_size):
        constant = check_positive_float(step_size, "step_size")
        step_size = lambda i: constant  # noqa: E731
    missing = tf.cast(tf.logical_not(observed), x.dtype)
    noise_source = tf.random.Generator.from_seed(0 if seed is None else seed) \
        if seed is not None else tf.random.Generator.from_non_deterministic_state()

    @tf.function
    def step(x, rate):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(model.log_prob(x) if context is None
                                  else model.log_prob(x, context=context))
        grad = tape.gradient(total, x)
        if noise:
            grad = grad + noise * noise_source.normal(tf.shape(x), dtype=x.dtype)
        x = x + rate * missing * grad
        if clip is not None:
            x = tf.clip_by_value(x, clip[0], clip[1])
        return x

    for i in range(int(num_steps)):
        x = step(x, tf.constant(step_size(i), x.dtype))
    return x


def hidden_mask(kind, image_shape, size, seed=0):
    """A flat boolean mask of `size` entries, `True` = observed.

    `kind` is a half of each image (`"bottom"`, `"top"`, `"left"`, `"right"`;
    needs `image_shape`, `(h, w)` or `(h, w, c)`) or `"random"`, a random half
    of the entries drawn from `seed`.
    """
    check_choice(kind, HIDE, "hide")
    if kind == "random":
        observed = np.ones(size, bool)
        observed[np.random.default_rng(seed).permutation(size)[: size // 2]] = False
        return observed
    if image_shape is None:
        raise ValueError(f"hide={kind!r} needs image data; use hide='random'.")
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
