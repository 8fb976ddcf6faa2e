"""Builders of non-trivial networks and bijectors for the tests."""

import numpy as np
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
    import keras

    values = np.random.default_rng(seed).normal(scale=scale, size=shape)
    return keras.Variable(values, dtype=tf.as_dtype(dtype).name)


def lu_linear(event_shape, dtype, seed):
    """An LULinear from Glow's start plus random noise, and its variables."""
    size = int(np.prod(event_shape))
    init = tn.lu_linear_init(size, seed)
    rng = np.random.default_rng(seed + 1)
    import keras

    variables = [keras.Variable(init[k] + rng.normal(scale=0.2, size=init[k].shape),
                                dtype=tf.as_dtype(dtype).name)
                 for k in ("lower", "upper", "log_diag")]
    bij = tn.LULinear(*variables, init["sign"], init["permutation"], event_shape)
    return bij, variables


_NUMPY_ACTIVATIONS = {"tanh": np.tanh, "relu": lambda h: np.maximum(h, 0.0)}


def numpy_mlp(net, a):
    """A CouplingMLP (additive) evaluated in numpy from its weights."""
    act = _NUMPY_ACTIVATIONS[net.activation.__name__]
    h = a
    for layer in net.hidden_layers:
        h = act(h @ layer.kernel.numpy() + layer.bias.numpy())
    return h @ net.output_layer.kernel.numpy() + net.output_layer.bias.numpy()


def numpy_nice_log_prob(x, masks, nets, log_scale, prior="logistic"):
    """NICE's eq. (3) in numpy: the couplings in the order given, then the rescaling,
    then a standard logistic (or normal) p_H."""
    n = x.shape[0]
    h = np.asarray(x, np.float64).reshape(n, -1).copy()
    for mask, net in zip(masks, nets):
        m = np.asarray(mask).reshape(-1)
        h[:, ~m] = h[:, ~m] + numpy_mlp(net, h[:, m])
    s = np.broadcast_to(log_scale, x.shape[1:]).reshape(-1)
    h = h * np.exp(s)  # the rescaling is the last layer of f
    if prior == "logistic":
        log_p_h = -np.abs(h) - 2.0 * np.log1p(np.exp(-np.abs(h)))
    else:
        log_p_h = -0.5 * h ** 2 - 0.5 * np.log(2 * np.pi)
    return log_p_h.sum(axis=1) + s.sum()
