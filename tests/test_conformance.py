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
from helpers import (
    TOL,
    affine_coupling,
    conv1x1,
    coupling,
    lu_linear,
    nice_chain,
    random_log_scale,
    random_conv_net,
    random_mlp,
    random_variable,
)

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


def _affine(event_shape, partition, bound=None):
    def build(dtype):
        bij = affine_coupling(tn.partition_mask(partition, event_shape), dtype, seed=6,
                              bound=bound)
        return bij, event_shape, list(bij.shift_and_log_scale_fn.trainable_weights)
    return build


def _affine_single_tensor(event_shape):
    def build(dtype):
        mask = tn.partition_mask("halves", event_shape)
        n_a, n_b = int(mask.sum()), int((~mask).sum())
        w = tf.constant(np.random.default_rng(2).normal(size=(n_a, 2 * n_b)), dtype)
        bij = tn.AffineCoupling(lambda a: 3.0 * tf.tanh(a @ w), mask, log_scale_bound=1.5)
        return bij, event_shape, []
    return build


def _permutation(event_shape, kind):
    def build(dtype):
        size = int(np.prod(event_shape))
        perm = (tn.reverse_permutation(size) if kind == "reverse"
                else tn.random_permutation(size, seed=4))
        return tn.Permutation(perm, event_shape), event_shape, []
    return build


def _lu(event_shape):
    def build(dtype):
        bij, variables = lu_linear(event_shape, dtype, seed=8)
        return bij, event_shape, variables
    return build


def _conv1x1(event_shape):
    def build(dtype):
        bij, variables = conv1x1(event_shape[-1], dtype, seed=11)
        return bij, event_shape, variables
    return build


def _conv_coupling(event_shape, affine, scale="bounded"):
    """A channel coupling whose network is a CouplingConvNet with random weights."""
    def build(dtype):
        mask = tn.partition_mask("channel", event_shape)
        c_a = int(mask[0, 0].sum())
        net = random_conv_net(event_shape[:2] + (c_a,), event_shape[-1] - c_a, dtype, 12,
                              affine=affine, scale=scale)
        kind = tn.AffineCoupling if affine else tn.AdditiveCoupling
        return kind(net, mask), event_shape, list(net.trainable_weights)
    return build


def _actnorm(param_shape, event_shape):
    def build(dtype):
        s, b = random_variable(param_shape, dtype, 9), random_variable(param_shape, dtype, 10)
        return tn.ActNorm(s, b), event_shape, [s, b]
    return build


def _glow_like(event_shape):
    """Affine couplings, each after an ActNorm and an LU linear map, then a rescaling."""
    def build(dtype):
        masks = tn.coupling_masks(event_shape, 3, "odd_even")
        nets = [random_mlp(int(m.sum()), int((~m).sum()), dtype, 20 + k, affine=True)
                for k, m in enumerate(masks)]
        variables = [w for net in nets for w in net.trainable_weights]
        f_layers = []
        for k in range(3):
            lu, lu_vars = lu_linear(event_shape, dtype, seed=30 + k)
            s, b = random_variable(event_shape, dtype, 40 + k), random_variable(
                event_shape, dtype, 50 + k)
            f_layers += [tn.ActNorm(s, b), lu, tn.AffineCoupling(nets[k], masks[k])]
            variables += lu_vars + [s, b]
        log_scale = random_log_scale(event_shape, dtype, 60)
        g = tn.generator(f_layers + [tn.Rescaling(log_scale)])
        return g, event_shape, variables + [log_scale]
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
    "affine-odd-even": _affine((7,), "odd_even"),
    "affine-bounded": _affine((6,), "halves", bound=0.5),
    "affine-checkerboard-image": _affine((4, 4, 2), "checkerboard"),
    "affine-single-tensor-callable": _affine_single_tensor((5,)),
    "permutation-reverse": _permutation((5,), "reverse"),
    "permutation-random-image": _permutation((3, 3, 2), "random"),
    "lu-linear-vector": _lu((5,)),
    "lu-linear-image": _lu((2, 2, 3)),
    "actnorm-vector": _actnorm((5,), (5,)),
    "actnorm-image-per-channel": _actnorm((3,), (4, 4, 3)),
    "glow-like-chain": _glow_like((6,)),
    "conv1x1-image": _conv1x1((4, 4, 3)),
    "conv1x1-non-square-image": _conv1x1((2, 3, 4)),
    "additive-channel-conv-net": _conv_coupling((4, 4, 2), affine=False),
    "affine-channel-conv-net-bounded": _conv_coupling((4, 4, 4), affine=True),
    "affine-channel-conv-net-sigmoid": _conv_coupling((4, 4, 3), affine=True, scale="sigmoid"),
}
NO_VARIABLES = {"rescaling-constant-tensor", "additive-plain-callable",
                "affine-single-tensor-callable", "permutation-reverse",
                "permutation-random-image"}

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


def _jacobian_matrix(fn, x, event_shape):
    """The Jacobian of `fn` at each example of `x`, flattened: `[n, size, size]`."""
    n, size = x.shape[0], int(np.prod(event_shape))
    x_flat = tf.reshape(x, (n, size))
    with tf.GradientTape() as tape:
        tape.watch(x_flat)
        y_flat = tf.reshape(fn(tf.reshape(x_flat, (n,) + tuple(event_shape))), (n, size))
    return tape.batch_jacobian(y_flat, x_flat)


def _autodiff_log_det(fn, x, event_shape):
    return tf.linalg.slogdet(_jacobian_matrix(fn, x, event_shape))[1]


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
    tol = 1e-5 if dtype == tf.float32 else 1e-12
    np.testing.assert_allclose(y_graph, y_eager, rtol=tol, atol=tol)
    np.testing.assert_allclose(ldj_graph, ldj_eager, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", sorted(set(CASES) - NO_VARIABLES))
def test_gradient_reaches_every_variable(name, dtype):
    bij, event_shape, variables = CASES[name](dtype)
    assert variables
    x = _data(event_shape, dtype)
    nd = len(event_shape)
    with tf.GradientTape() as tape:
        y = bij.forward(x)
        loss = tf.reduce_sum(y ** 2) + tf.reduce_sum(bij.forward_log_det_jacobian(x, event_ndims=nd))
    grads = tape.gradient(loss, variables)
    for v, g in zip(variables, grads):
        assert g is not None, f"no gradient for {v.path if hasattr(v, 'path') else v.name}"
        assert float(tf.reduce_max(tf.abs(g))) > 0.0, f"zero gradient for {v.name}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_is_constant_jacobian_says_whether_the_jacobian_matrix_is_constant(name):
    """TFP reads the flag as "the map is affine" and then pushes the base's moments
    through the bijector; only the autodiff Jacobian matrix decides it here."""
    bij, event_shape, _ = CASES[name](tf.float64)
    x = _data(event_shape, tf.float64, batch=(2,), seed=17)
    for fn in (bij.forward, bij.inverse):
        jac = _jacobian_matrix(fn, x, event_shape).numpy()
        constant = np.allclose(jac[0], jac[1], rtol=1e-9, atol=1e-12)
        assert bij.is_constant_jacobian == constant, (
            f"{name}: is_constant_jacobian={bij.is_constant_jacobian}, but the Jacobian "
            f"matrices at two points differ by {np.max(np.abs(jac[0] - jac[1])):.3g}")
