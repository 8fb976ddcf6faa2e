"""Property-based tests: random masks, event shapes, batch shapes and weights.

For every drawn bijector: the round trip, the log-det against autodiff, and
fldj(x) == -ildj(forward(x)).
"""

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfp_nice as tn

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def bijector_cases(draw):
    event_shape = draw(st.sampled_from([(2,), (3,), (5,), (8,), (2, 3), (3, 2, 2)]))
    size = int(np.prod(event_shape))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    mask = rng.random(size) < draw(st.floats(0.2, 0.8))
    if mask.all() or not mask.any():
        mask[0], mask[-1] = True, False
    mask = mask.reshape(event_shape)
    kind = draw(st.sampled_from(["additive", "affine", "rescaling", "actnorm", "lu",
                                 "permutation"]))
    dtype = tf.float64
    n_a, n_b = int(mask.sum()), int((~mask).sum())
    w = tf.constant(rng.normal(size=(n_a, 2 * n_b)), dtype)
    scale = draw(st.floats(0.1, 3.0))
    def flat(a):  # a mask that picks channels of an (h, w, c) event hands over an image
        return tf.reshape(a, (-1, n_a))

    if kind == "additive":
        bij = tn.AdditiveCoupling(lambda a: scale * tf.tanh(flat(a) @ w[:, :n_b]), mask)
    elif kind == "affine":
        bij = tn.AffineCoupling(lambda a: (tf.tanh(flat(a) @ w[:, :n_b]),
                                           scale * tf.tanh(flat(a) @ w[:, n_b:])), mask)
    elif kind == "rescaling":
        bij = tn.Rescaling(tf.constant(rng.normal(scale=scale, size=event_shape), dtype))
    elif kind == "actnorm":
        bij = tn.ActNorm(tf.constant(rng.normal(scale=scale, size=event_shape[-1:]), dtype),
                         tf.constant(rng.normal(size=event_shape[-1:]), dtype))
    elif kind == "lu":
        init = tn.lu_linear_init(size, seed)
        noise = {k: rng.normal(scale=0.3, size=init[k].shape) for k in ("lower", "upper",
                                                                         "log_diag")}
        bij = tn.LULinear(*(tf.constant(init[k] + noise[k], dtype)
                            for k in ("lower", "upper", "log_diag")),
                          init["sign"], init["permutation"], event_shape)
    else:
        bij = tn.Permutation(tn.random_permutation(size, seed), event_shape)
    batch = draw(st.sampled_from([(), (1,), (4,), (2, 3)]))
    x = tf.constant(rng.normal(scale=draw(st.floats(0.1, 5.0)), size=batch + event_shape), dtype)
    return bij, event_shape, x


@SETTINGS
@given(bijector_cases())
def test_round_trip(case):
    bij, _, x = case
    back = bij.inverse(tf.identity(bij.forward(x)))
    np.testing.assert_allclose(back, x, atol=1e-9, rtol=1e-9)
    back = bij.forward(tf.identity(bij.inverse(x)))
    np.testing.assert_allclose(back, x, atol=1e-9, rtol=1e-9)


@SETTINGS
@given(bijector_cases())
def test_log_det_against_autodiff(case):
    bij, event_shape, x = case
    size = int(np.prod(event_shape))
    flat = tf.reshape(x, (-1, size))
    with tf.GradientTape() as tape:
        tape.watch(flat)
        y = tf.reshape(bij.forward(tf.reshape(flat, (-1,) + event_shape)), (-1, size))
    jac = tape.batch_jacobian(y, flat)
    expected = tf.reshape(tf.linalg.slogdet(jac)[1], x.shape[: x.shape.rank - len(event_shape)])
    fldj = bij.forward_log_det_jacobian(x, event_ndims=len(event_shape))
    np.testing.assert_allclose(fldj, expected, atol=1e-8, rtol=1e-8)


@SETTINGS
@given(bijector_cases())
def test_fldj_is_minus_ildj_of_forward(case):
    bij, event_shape, x = case
    nd = len(event_shape)
    fldj = bij.forward_log_det_jacobian(x, event_ndims=nd)
    ildj = bij.inverse_log_det_jacobian(tf.identity(bij.forward(x)), event_ndims=nd)
    np.testing.assert_allclose(fldj, -ildj, atol=1e-9, rtol=1e-9)
