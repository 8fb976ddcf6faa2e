"""One conformance suite over every bijector of the package, float32 and float64.

Each case is checked against independent references: the round trip through
`tf.identity` (so TFP's cache cannot answer), the log-det against
`tf.GradientTape.batch_jacobian` + `tf.linalg.slogdet`, the identity
`fldj(x) == -ildj(forward(x))`, batch shapes, and gradients.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn
from conftest import record_error
from helpers import TOL, coupling, nice_chain, random_log_scale

tfb = tfp.bijectors


def _rescaling(shape, event_shape, variable=True):
    def build(dtype):
        ls = random_log_scale(shape, dtype, seed=3, variable=variable)
        return tn.Rescaling(ls), event_shape, ([ls] if variable else [])
    return build


def _coupling(event_shape, partition, plain_callable=False):
    def build(dtype):
        if isinstance(partition, str):
            mask = tn.partition_mask(partition, event_shape)
        else:
            mask = partition
        bij = coupling(mask, dtype, seed=5, plain_callable=plain_callable)
        variables = [] if plain_callable else list(bij.shift_fn.trainable_weights)
        return bij, event_shape, variables
    return build


def _nice(event_shape, partition, log_scale_shape=None, invert=False, rescaling=True):
    def build(dtype):
        g, variables = nice_chain(event_shape, dtype, seed=11, partition=partition,
                                  log_scale_shape=log_scale_shape, rescaling=rescaling)
        return (g.bijector if invert else g), event_shape, variables
    return build


_RANDOM_MASK = np.random.default_rng(0).random(7) < 0.5

CASES = {
    "rescaling-vector": _rescaling((5,), (5,)),
    "rescaling-constant-tensor": _rescaling((3,), (3,), variable=False),
    "rescaling-image-per-pixel": _rescaling((4, 4, 2), (4, 4, 2)),
    "rescaling-image-per-channel": _rescaling((2,), (4, 4, 2)),
    "rescaling-scalar": _rescaling((), (3,)),
    "additive-halves-odd-size": _coupling((5,), "halves"),
    "additive-odd-even-odd-size": _coupling((7,), "odd_even"),
    "additive-odd-even-even-size": _coupling((6,), "odd_even"),
    "additive-checkerboard-image": _coupling((4, 4, 2), "checkerboard"),
    "additive-checkerboard-odd-image": _coupling((3, 5, 1), "checkerboard"),
    "additive-channel-image": _coupling((4, 4, 3), "channel"),
    "additive-random-mask": _coupling((7,), _RANDOM_MASK),
    "additive-plain-callable": _coupling((6,), "odd_even", plain_callable=True),
    "nice-g-vector": _nice((6,), "odd_even"),
    "nice-f-vector": _nice((5,), "halves", invert=True),
    "nice-g-no-rescaling": _nice((5,), "odd_even", rescaling=False),
    "nice-g-image-per-channel": _nice((4, 4, 2), "checkerboard", log_scale_shape=(2,)),
    "nice-g-image-channel-partition": _nice((2, 2, 4), "channel"),
}

DTYPES = [tf.float32, tf.float64]


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request):
    return CASES[request.param]


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


def _data(event_shape, dtype, batch=(8,), seed=7):
    return tf.constant(np.random.default_rng(seed).normal(size=batch + tuple(event_shape)),
                       dtype=dtype)


def _autodiff_log_det(fn, x, event_shape):
    n, size = x.shape[0], int(np.prod(event_shape))
    x_flat = tf.reshape(x, (n, size))
    with tf.GradientTape() as tape:
        tape.watch(x_flat)
        y_flat = tf.reshape(fn(tf.reshape(x_flat, (n,) + tuple(event_shape))), (n, size))
    jac = tape.batch_jacobian(y_flat, x_flat)
    return tf.linalg.slogdet(jac)[1]


def test_round_trip(case, dtype):
    bij, event_shape, _ = case(dtype)
    x = _data(event_shape, dtype)
    y = bij.forward(x)
    x_back = bij.inverse(tf.identity(y))
    err = float(tf.reduce_max(tf.abs(x_back - x)))
    y_back = bij.forward(tf.identity(bij.inverse(tf.identity(x))))
    err = max(err, float(tf.reduce_max(tf.abs(y_back - x))))
    record_error("round trip", dtype, err)
    assert y.dtype == dtype and y.shape == x.shape
    assert err < TOL[dtype]["round_trip"]


def test_forward_log_det_matches_autodiff(case, dtype):
    bij, event_shape, _ = case(dtype)
    x = _data(event_shape, dtype)
    fldj = bij.forward_log_det_jacobian(x, event_ndims=len(event_shape))
    expected = _autodiff_log_det(bij.forward, x, event_shape)
    err = float(tf.reduce_max(tf.abs(fldj - expected)))
    record_error("fldj vs autodiff", dtype, err)
    assert fldj.shape == (8,)
    assert err < TOL[dtype]["log_det"]


def test_inverse_log_det_matches_autodiff(case, dtype):
    bij, event_shape, _ = case(dtype)
    y = _data(event_shape, dtype, seed=8)
    ildj = bij.inverse_log_det_jacobian(y, event_ndims=len(event_shape))
    expected = _autodiff_log_det(bij.inverse, y, event_shape)
    err = float(tf.reduce_max(tf.abs(ildj - expected)))
    record_error("ildj vs autodiff", dtype, err)
    assert ildj.shape == (8,)
    assert err < TOL[dtype]["log_det"]


def test_fldj_is_minus_ildj_of_forward(case, dtype):
    bij, event_shape, _ = case(dtype)
    x = _data(event_shape, dtype)
    nd = len(event_shape)
    fldj = bij.forward_log_det_jacobian(x, event_ndims=nd)
    ildj = bij.inverse_log_det_jacobian(tf.identity(bij.forward(x)), event_ndims=nd)
    err = float(tf.reduce_max(tf.abs(fldj + ildj)))
    record_error("fldj + ildj(forward)", dtype, err)
    assert err < TOL[dtype]["log_det"]


def test_batch_shapes(case, dtype):
    bij, event_shape, _ = case(dtype)
    nd = len(event_shape)
    for batch in [(), (1,), (2, 3)]:
        x = _data(event_shape, dtype, batch=batch)
        assert bij.forward(x).shape == x.shape
        assert bij.inverse(x).shape == x.shape
        assert bij.forward_log_det_jacobian(x, event_ndims=nd).shape == batch
        assert bij.inverse_log_det_jacobian(x, event_ndims=nd).shape == batch


def test_graph_mode_with_unknown_batch_matches_eager(case, dtype):
    bij, event_shape, _ = case(dtype)
    nd = len(event_shape)

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(event_shape), dtype)])
    def both(x):
        return bij.forward(x), bij.forward_log_det_jacobian(x, event_ndims=nd)

    x = _data(event_shape, dtype)
    y_graph, ldj_graph = both(x)
    y_eager = bij.forward(tf.identity(x))
    ldj_eager = bij.forward_log_det_jacobian(tf.identity(x), event_ndims=nd)
    np.testing.assert_allclose(y_graph, y_eager, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ldj_graph, ldj_eager, rtol=1e-6, atol=1e-6)


def test_gradient_reaches_every_variable(case, dtype):
    bij, event_shape, variables = case(dtype)
    if not variables:
        pytest.skip("this case holds no variables")
    x = _data(event_shape, dtype)
    nd = len(event_shape)
    with tf.GradientTape() as tape:
        y = bij.forward(x)
        loss = tf.reduce_sum(y ** 2) + tf.reduce_sum(bij.forward_log_det_jacobian(x, event_ndims=nd))
    grads = tape.gradient(loss, variables)
    for v, g in zip(variables, grads):
        assert g is not None, f"no gradient for {v.path if hasattr(v, 'path') else v.name}"
        assert float(tf.reduce_max(tf.abs(g))) > 0.0, f"zero gradient for {v.name}"


def test_is_constant_jacobian(case, dtype):
    bij, _, _ = case(dtype)
    assert bij.is_constant_jacobian
