"""The contenders of the training benchmarks, all of the NICE paper's MNIST shape.

Each `make_*` returns a function that runs one training pass over a list of
batches and blocks until it is done, so that wall-clock time around it is honest.
All of them: 4 couplings with odd/even partitions alternating, coupling networks
of `hidden` ReLU layers, a learned diagonal rescaling, a standard logistic prior,
Adam(1e-3), float32.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import keras
import tfp_nice as tn

tfb, tfd = tfp.bijectors, tfp.distributions

NUM_COUPLINGS = 4


def training_flops(d, hidden, batch):
    """Floating-point operations of one training step of the 4 coupling MLPs.

    2 x the multiply-adds of the forward pass, times 3 for forward, backward to
    the activations and backward to the weights; the flow's own element-wise
    work and the optimiser are not counted (they are memory-bound and small).
    """
    sizes = [d // 2] + list(hidden) + [d - d // 2]
    per_net = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 3 * 2 * NUM_COUPLINGS * per_net * batch


def _loop(step, batches):
    def run():
        for b in batches:
            loss = step(b)
        float(loss)  # waits for the last step
    return run


def max_likelihood_loop(flow, variables, batches, jit):
    """A raw `tf.function` Adam step on the mean NLL of `flow`, looped over `batches`."""
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function(jit_compile=jit)
    def step(xb):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow.log_prob(xb))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    float(step(batches[0]))
    return _loop(step, batches)


def nice_fit(x, d, hidden, batch, jit, rescaling_init="data", policy=None):
    """`tfp_nice.NICE` trained by `model.fit` on the numpy array `x`, one epoch per call.

    `policy` (e.g. "mixed_bfloat16") is the Keras dtype policy the model is built
    under: its coupling networks compute in that policy's compute dtype.
    """
    keras.utils.set_random_seed(0)
    model = tn.NICE((d,), num_couplings=NUM_COUPLINGS, hidden_units=hidden,
                    rescaling_init=rescaling_init, dtype=policy)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=jit)
    model.fit(x[:batch * 2], epochs=1, batch_size=batch, verbose=0)  # warm-up (and data init)

    def run():
        model.fit(x, epochs=1, batch_size=batch, verbose=0, shuffle=False)
    return run


def nice_raw_step(batches, d, hidden, jit):
    """`tfp_nice.NICE`'s distribution in a raw `tf.function` step: the flow without `fit`."""
    keras.utils.set_random_seed(0)
    model = tn.NICE((d,), num_couplings=NUM_COUPLINGS, hidden_units=hidden,
                    rescaling_init="zeros")
    flow, variables = model.distribution, model.trainable_weights
    return max_likelihood_loop(flow, variables, batches, jit)


def bare_mlps(batches, d, hidden, jit):
    """The compute limit: the same four MLPs on a dummy loss, no flow, a raw `tf.function`."""
    masks = tn.coupling_masks((d,), NUM_COUPLINGS, "odd_even")
    nets = [tn.CouplingMLP(hidden, int((~m).sum())) for m in masks]
    for net, m in zip(nets, masks):
        net.build((None, int(m.sum())))
    variables = [w for n in nets for w in n.trainable_weights]
    optimizer = keras.optimizers.Adam(1e-3)
    starts = [0 if m.reshape(-1)[0] else 1 for m in masks]

    @tf.function(jit_compile=jit)
    def step(xb):
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_mean(net(xb[:, s::2]) ** 2)
                             for net, s in zip(nets, starts)])
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    float(step(batches[0]))
    return _loop(step, batches)


def tfp_real_nvp(batches, d, hidden, jit):
    """TFP's own NICE: `tfb.RealNVP` (shift only) between `tfb.Permute`s, then `tfb.Scale`."""
    nets = [tn.CouplingMLP(hidden, d - d // 2) for _ in range(NUM_COUPLINGS)]
    for net in nets:
        net.build((None, d // 2))
    log_scale = tf.Variable(tf.zeros(d))
    perm = np.concatenate([np.arange(0, d, 2), np.arange(1, d, 2)]).astype(np.int32)
    layers = [tfb.Scale(tfp.util.DeferredTensor(log_scale, tf.exp))]
    for k, net in enumerate(reversed(nets)):
        layers.append(tfb.RealNVP(
            num_masked=d // 2,
            shift_and_log_scale_fn=lambda x0, n, net=net: (net(x0), None)))
        layers.append(tfb.Permute(perm) if k % 2 == 0 else tfb.Invert(tfb.Permute(perm)))
    flow = tfd.TransformedDistribution(
        tfd.Independent(tfd.Logistic(tf.zeros(d), 1.0), 1), tfb.Invert(tfb.Chain(layers)))
    variables = [w for n in nets for w in n.trainable_weights] + [log_scale]
    return max_likelihood_loop(flow, variables, batches, jit)


def nflows_available():
    """`None` if PyTorch and nflows import, else why not."""
    try:
        import nflows  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        return f"not installed ({err.name}; pip install -e '.[bench]')"
    return None


def nflows_flow(x_batches, d, hidden):
    """nflows' `AdditiveCouplingTransform` x 4, a learned rescaling, a logistic prior."""
    import torch
    from nflows.distributions.base import Distribution
    from nflows.flows.base import Flow
    from nflows.transforms.base import CompositeTransform, Transform
    from nflows.transforms.coupling import AdditiveCouplingTransform

    torch.manual_seed(0)

    class Rescaling(Transform):
        def __init__(self, features):
            super().__init__()
            self.log_scale = torch.nn.Parameter(torch.zeros(features))

        def forward(self, inputs, context=None):
            return (inputs * torch.exp(self.log_scale),
                    self.log_scale.sum().expand(inputs.shape[0]))

        def inverse(self, inputs, context=None):
            return (inputs * torch.exp(-self.log_scale),
                    -self.log_scale.sum().expand(inputs.shape[0]))

    class StandardLogistic(Distribution):
        def __init__(self, features):
            super().__init__()
            self._features = features

        def _log_prob(self, inputs, context):
            return -(torch.nn.functional.softplus(inputs)
                     + torch.nn.functional.softplus(-inputs)).sum(dim=1)

    def mlp(in_features, out_features):
        sizes = [in_features] + list(hidden)
        modules = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            modules += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        last = torch.nn.Linear(sizes[-1], out_features)
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        return Net(torch.nn.Sequential(*modules, last))

    class Net(torch.nn.Module):  # nflows calls the network with (inputs, context)
        def __init__(self, layers):
            super().__init__()
            self.layers = layers

        def forward(self, inputs, context=None):
            return self.layers(inputs)

    even = torch.arange(d) % 2 == 0
    masks = [torch.where(even, -1, 1) if k % 2 == 0 else torch.where(even, 1, -1)
             for k in range(NUM_COUPLINGS)]  # > 0: transformed
    transform = CompositeTransform(
        [AdditiveCouplingTransform(m, mlp) for m in masks] + [Rescaling(d)])
    flow = Flow(transform, StandardLogistic([d]))
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    batches = [torch.from_numpy(np.asarray(b)) for b in x_batches]

    def step(xb):
        optimizer.zero_grad(set_to_none=True)
        loss = -flow.log_prob(xb).mean()
        loss.backward()
        optimizer.step()
        return loss.detach()

    float(step(batches[0]))
    return _loop(step, batches)
