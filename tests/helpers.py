"""Builders of non-trivial networks and bijectors for the tests."""

import importlib.util
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_nice as tn

TOL = {
    tf.float32: {"round_trip": 1e-5, "log_det": 1e-4},
    tf.float64: {"round_trip": 1e-12, "log_det": 1e-10},
}


def random_mlp(n_in, n_out, dtype, seed, hidden=(16, 16), activation="tanh", affine=False):
    """A CouplingMLP with every weight random (a fresh one is the zero map)."""
    net = tn.CouplingMLP(hidden, n_out, activation=activation, dtype=tf.as_dtype(dtype).name,
                         affine=affine)
    net.build((None, n_in))
    rng = np.random.default_rng(seed)
    for w in net.weights:
        w.assign(rng.normal(scale=0.4, size=w.shape))
    return net


def random_conv_net(part_shape, c_out, dtype, seed, hidden=(8,), affine=False,
                    scale="bounded"):
    """A CouplingConvNet with every weight random (a fresh one is the zero map)."""
    net = tn.CouplingConvNet(hidden, c_out, activation="tanh", affine=affine, scale=scale,
                             dtype=tf.as_dtype(dtype).name)
    net.build((None,) + tuple(part_shape))
    rng = np.random.default_rng(seed)
    for w in net.weights:
        w.assign(rng.normal(scale=0.3, size=w.shape))
    return net


def conv1x1(channels, dtype, seed):
    """An InvertibleConv1x1 from Glow's start plus random noise, and its variables."""
    init = tn.lu_linear_init(channels, seed)
    rng = np.random.default_rng(seed + 1)
    variables = [keras.Variable(init[k] + rng.normal(scale=0.2, size=init[k].shape),
                                dtype=tf.as_dtype(dtype).name)
                 for k in ("lower", "upper", "log_diag")]
    return tn.InvertibleConv1x1(*variables, init["sign"], init["permutation"]), variables


class LinearTanhShift:
    """A plain callable (not a Keras layer): `tanh(x_a @ W)`."""

    def __init__(self, n_in, n_out, dtype, seed):
        rng = np.random.default_rng(seed)
        self.w = tf.constant(rng.normal(size=(n_in, n_out)), dtype=dtype)

    def __call__(self, x_a):
        return tf.tanh(tf.linalg.matvec(self.w, x_a, transpose_a=True))


def coupling(mask, dtype, seed, plain_callable=False):
    mask = np.asarray(mask, dtype=bool)
    n_a, n_b = int(mask.sum()), int((~mask).sum())
    if plain_callable:
        fn = LinearTanhShift(n_a, n_b, dtype, seed)
    else:
        fn = random_mlp(n_a, n_b, dtype, seed)
    return tn.AdditiveCoupling(fn, mask)


def random_log_scale(shape, dtype, seed, variable=True):
    values = np.random.default_rng(seed).normal(scale=0.5, size=shape)
    if variable:
        import keras

        return keras.Variable(values, dtype=tf.as_dtype(dtype).name, name="log_scale")
    return tf.constant(values, dtype=dtype)


def nice_chain(event_shape, dtype, seed, partition="odd_even", num_couplings=4,
               log_scale_shape=None, rescaling=True):
    """`g` (latent -> data) of a NICE flow with random weights, and its variables."""
    masks = tn.coupling_masks(event_shape, num_couplings, partition)
    nets = [random_mlp(int(m.sum()), int((~m).sum()), dtype, seed + k) for k, m in enumerate(masks)]
    log_scale = None
    if rescaling:
        shape = event_shape if log_scale_shape is None else log_scale_shape
        log_scale = random_log_scale(shape, dtype, seed + 100)
    g = tn.nice_bijector(event_shape, nets, partition=partition, log_scale=log_scale)
    variables = [w for net in nets for w in net.trainable_weights]
    if log_scale is not None:
        variables.append(log_scale)
    return g, variables


def affine_coupling(mask, dtype, seed, bound=None):
    mask = np.asarray(mask, dtype=bool)
    net = random_mlp(int(mask.sum()), int((~mask).sum()), dtype, seed, affine=True)
    return tn.AffineCoupling(net, mask, log_scale_bound=bound)


def random_variable(shape, dtype, seed, scale=0.3):
    values = np.random.default_rng(seed).normal(scale=scale, size=shape)
    return keras.Variable(values, dtype=tf.as_dtype(dtype).name)


def lu_linear(event_shape, dtype, seed):
    """An LULinear from Glow's start plus random noise, and its variables."""
    size = int(np.prod(event_shape))
    init = tn.lu_linear_init(size, seed)
    rng = np.random.default_rng(seed + 1)
    variables = [keras.Variable(init[k] + rng.normal(scale=0.2, size=init[k].shape),
                                dtype=tf.as_dtype(dtype).name)
                 for k in ("lower", "upper", "log_diag")]
    bij = tn.LULinear(*variables, init["sign"], init["permutation"], event_shape)
    return bij, variables


_NUMPY_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda h: np.maximum(h, 0.0)}


def _half_dense(h, kernel, bias, half):
    """`h @ kernel + bias` as a CPU with native half-precision arithmetic may compute
    it: inputs rounded to `half` (to nearest even), each partial sum rounded in turn."""
    h, kernel, bias = h.astype(half), kernel.astype(half), bias.astype(half)
    total = np.zeros((h.shape[0], kernel.shape[1]), half)
    for i in range(kernel.shape[0]):
        total = (total + (h[:, i:i + 1] * kernel[i][None, :]).astype(half)).astype(half)
    return (total + bias).astype(half)


def numpy_mlp(net, a, half=None):
    """A CouplingMLP (additive) evaluated in numpy from its weights: in float64, or with
    `half` (a numpy or ml_dtypes dtype) in half precision, accumulating in it."""
    act = _NUMPY_ACTIVATIONS[net.activation.__name__]
    h = a
    for layer in [*net.hidden_layers, net.output_layer]:
        kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
        z = h @ kernel + bias if half is None else _half_dense(h, kernel, bias, half)
        h = z if layer is net.output_layer else act(z)
    return np.asarray(h, np.float64)


def numpy_nice_log_prob(x, masks, nets, log_scale, prior="logistic", half=None):
    """NICE's eq. (3) in numpy: the couplings in the order given, then the rescaling,
    then a standard logistic (or normal) p_H; with `half`, the networks compute in it."""
    n = x.shape[0]
    h = np.asarray(x, np.float64).reshape(n, -1).copy()
    for mask, net in zip(masks, nets):
        m = np.asarray(mask).reshape(-1)
        h[:, ~m] = h[:, ~m] + numpy_mlp(net, h[:, m], half)
    s = np.broadcast_to(log_scale, x.shape[1:]).reshape(-1)
    h = h * np.exp(s)  # the rescaling is the last layer of f
    if prior == "logistic":
        log_p_h = -np.abs(h) - 2.0 * np.log1p(np.exp(-np.abs(h)))
    else:
        log_p_h = -0.5 * h ** 2 - 0.5 * np.log(2 * np.pi)
    return log_p_h.sum(axis=1) + s.sum()


def unit_roundoff(dtype):
    """`u = eps / 2` of a floating dtype: float16 2**-11, bfloat16 2**-8, float32 2**-24."""
    import ml_dtypes

    return float(ml_dtypes.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps) / 2


def half_precision_log_prob_tolerance(model, x, sigmas=6.0):
    """Per example, how far two computations of `model.log_prob(x)` may fall apart when
    both run the coupling networks in the policy's half-precision compute dtype but round
    differently: eager against a graph or a served SavedModel (fused `MatMul + BiasAdd +
    Relu`), oneDNN on or off, another CPU's kernels (native float16 arithmetic on
    AVX512-FP16 or Arm, which may accumulate in half precision).

    Derived from the dtype's unit roundoff `u` and the sizes of the sums, not measured.
    Each rounding to half precision errs by up to `u |v|`, with either sign: modelled as
    independent and uniform, of rms `u |v| / sqrt(3)`. In every `Dense` layer the output
    `z_j = sum_i h_i W_ij + b_j` may be rounded after the product and after the bias, and
    a kernel that accumulates in half precision rounds each partial sum
    `S_k = sum_{i <= k} h_i W_ij` (taken in order, the largest partial sums of the usual
    orders): together an rms of `u / sqrt(3) * sqrt(p_j^2 + z_j^2 + sum_k S_k^2)`. To
    first order `log p` moves by `sum_j (d log p / d z_j) dz_j` over every layer of every
    network, the gradient taken by autodiff in a float32 copy of the model: an rms `sigma`
    of the root sum of squares. Two computations differ by `sqrt(2) sigma`; the tolerance
    is `sigmas` (6) of those.
    """
    compute = tf.as_dtype(model.coupling_networks[0].compute_dtype)
    u = unit_roundoff(compute)
    twin = type(model).from_config({**model.get_config(), "dtype": "float32"})
    twin.set_weights(model.get_weights())
    deltas = []
    with tf.GradientTape() as tape:
        def sensitive(layer):
            def call(h):
                kernel = tf.convert_to_tensor(layer.kernel)
                product = tf.matmul(h, kernel)
                z = product + tf.convert_to_tensor(layer.bias)
                final = tf.square(product) + tf.square(z)
                partial = tf.cumsum(h[:, :, None] * kernel[None, :, :], axis=1)  # S_k
                size = u / np.sqrt(3.0) * tf.sqrt(final + tf.reduce_sum(tf.square(partial), 1))
                delta = tf.zeros_like(z)
                tape.watch(delta)
                deltas.append(delta)
                return layer.activation(z + delta * size)
            return call

        for net in twin.coupling_networks:
            for layer in [*net.hidden_layers, net.output_layer]:
                layer.call = sensitive(layer)
        total = tf.reduce_sum(twin.log_prob(x))
    grads = tape.gradient(total, deltas)
    sigma = tf.sqrt(sum(tf.reduce_sum(tf.square(g), axis=-1) for g in grads))
    return sigmas * np.sqrt(2.0) * sigma.numpy()


def repo_module(relative_path, name):
    """The repository's script at `relative_path` (an example, a benchmark) imported as a
    module named `name`; the test is skipped where the file is absent (an installed sdist
    without it)."""
    path = pathlib.Path(__file__).resolve().parents[1] / relative_path
    if not path.is_file():
        pytest.skip(f"{relative_path} is not here")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
