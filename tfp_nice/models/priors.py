"""The base distributions a model can be given by name."""

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

PRIORS = ("logistic", "normal")


def make_prior(prior, event_shape, dtype):
    """Returns the standard `prior` ("logistic" or "normal") over `event_shape`."""
    zeros = tf.zeros(event_shape, dtype)
    ones = tf.ones(event_shape, dtype)
    if prior == "logistic":
        base = tfd.Logistic(zeros, ones)
    elif prior == "normal":
        base = tfd.Normal(zeros, ones)
    else:
        raise ValueError(f"Unknown prior {prior!r}; expected one of {PRIORS} or a "
                         "tfd.Distribution.")
    return tfd.Independent(base, reinterpreted_batch_ndims=len(event_shape))


def check_custom_prior(prior, event_shape, dtype):
    """Raises `ValueError` unless `prior` is a distribution over `event_shape`."""
    if not isinstance(prior, tfd.Distribution):
        raise ValueError(
            f"prior must be one of {PRIORS} or a tfd.Distribution, got {prior!r}."
        )
    if tuple(prior.event_shape) != tuple(event_shape) or tuple(prior.batch_shape) != ():
        raise ValueError(
            f"The prior must have event shape {tuple(event_shape)} and batch shape (); "
            f"got event shape {tuple(prior.event_shape)}, batch shape "
            f"{tuple(prior.batch_shape)} (wrap it in tfd.Independent)."
        )
    if prior.dtype != tf.as_dtype(dtype):
        raise ValueError(f"The prior's dtype {tf.as_dtype(prior.dtype).name} is not the "
                         f"model's {tf.as_dtype(dtype).name}.")
