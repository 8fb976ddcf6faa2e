"""What `tfp_nice._private_api` reads from Keras and TFP outside their public APIs, checked
against the installed releases: a release that renames or changes one fails here, by name.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn
from tfp_nice import _private_api

tfb = tfp.bijectors


def test_all_layers_built_walks_the_nested_layers():
    model = tn.NICE((4,), num_couplings=2, hidden_units=(3,))
    assert _private_api.all_layers_built(model)

    class Holder(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = keras.layers.Dense(3)  # never built

        def call(self, x):
            return x

    holder = Holder()
    holder.build((None, 2))
    outer = keras.Sequential([holder])
    outer.build((None, 2))
    assert outer.built and holder.built and not holder.inner.built
    assert not _private_api.all_layers_built(outer)


@pytest.mark.parametrize("use_ema", [True, False])
def test_has_moving_averages_reads_an_optimizers_weight_averages(use_ema):
    optimizer = keras.optimizers.Adam(1e-3, use_ema=use_ema)
    weights = [keras.Variable(np.ones(3, "float32"))]
    assert not _private_api.has_moving_averages(optimizer)  # not built yet
    optimizer.build(weights)
    assert _private_api.has_moving_averages(optimizer) is use_ema


def test_backing_variable_is_the_tf_variable_behind_a_keras_variable_even_under_autocast():
    variable = keras.Variable(np.ones(2, "float32"))
    backing = _private_api.backing_variable(variable)
    assert isinstance(backing, tf.Variable) and backing.dtype == tf.float32
    variable.assign([3.0, 4.0])
    np.testing.assert_array_equal(backing.numpy(), [3.0, 4.0])

    seen = {}

    class Probe(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(2,), initializer="ones")

        def call(self, x):  # inside the autocast scope of a mixed-precision layer
            seen["value"] = self.w.value.dtype
            seen["backing"] = _private_api.backing_variable(self.w).dtype
            return x

    Probe(dtype="mixed_bfloat16")(tf.zeros((1, 2)))
    assert seen["value"] == tf.bfloat16  # what the public .value gives there
    assert seen["backing"] == tf.float32


def test_the_log_det_cache_stores_the_log_det_computed_with_the_result():
    # A coupling's log_prob computes each network once: the forward log-det comes from
    # the cache the inverse filled, so the network runs once per log_prob call.
    calls = []

    class Counting(keras.layers.Layer):
        def call(self, x_a):
            calls.append(1)
            return tf.concat([0.5 * x_a, 0.1 * x_a], axis=-1)  # shift, log-scale

    bij = tn.AffineCoupling(Counting(), np.array([True, False]))
    x = tf.constant([[0.3, -1.0]])
    y = bij.forward(x)
    before = len(calls)
    log_det = bij.forward_log_det_jacobian(x, event_ndims=1)  # cached with y
    assert len(calls) == before
    np.testing.assert_allclose(bij.inverse(y), x)
    assert np.isfinite(log_det.numpy()).all()
    cache = _private_api.log_det_with_result_cache("_augmented_forward", "_augmented_inverse")
    assert isinstance(cache, type(tfb.FFJORD.__dict__["_cache"]))
