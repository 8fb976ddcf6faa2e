"""The contenders of the autoregressive benchmark (section 9): MAFs of matched sizes.

Every contender: `steps` affine MAF transforms over `d` entries, each a MADE of two hidden
ReLU layers of `hidden` units, the order reversed between transforms, a standard normal
base, Adam(1e-3), float32, batches of the same data. Each `*_train` returns a function
that runs one training pass over the batches and blocks until it is done; `*_density`
one `log_prob` of a batch; `*_sample` one draw of a batch.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import keras
import tfp_nice as tn
from contenders import _loop, max_likelihood_loop, nflows_available

tfb, tfd = tfp.bijectors, tfp.distributions


def made_flops(d, hidden, batch, steps):
    """Floating-point operations of one training step of the MADEs (dense, as computed:
    the masks zero weights but the matmuls are full): 2 x the multiply-adds, x 3 for the
    backward passes."""
    sizes = [d, hidden, hidden, 2 * d]
    return 3 * 2 * steps * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * batch


def tn_maf(d, hidden, steps, inverse=False):
    return tn.Flow(tn.autoregressive_steps((d,), num_steps=steps, hidden_units=(hidden,) * 2,
                                           inverse=inverse, name="iaf" if inverse else "maf",
                                           partial=True),  # 2x512 over 784, as the others
                   prior="normal")


def tn_fit(x, d, hidden, steps, batch, steps_per_execution=1):
    """`tn.Flow` of `tn.autoregressive_steps` trained by `model.fit`, one epoch per call
    (with `steps_per_execution > 1`, Keras runs that many steps per call into the graph)."""
    keras.utils.set_random_seed(0)
    model = tn_maf(d, hidden, steps)
    model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=steps_per_execution)
    model.fit(x[:batch], epochs=1, batch_size=batch, verbose=0)  # traced
    return lambda: model.fit(x, epochs=1, batch_size=batch, verbose=0, shuffle=False)


def tn_raw_step(batches, d, hidden, steps):
    """The same flow in a raw `tf.function` Adam step (`contenders.max_likelihood_loop`)."""
    model = tn_maf(d, hidden, steps)
    return max_likelihood_loop(model, model.trainable_variables, batches, jit=False)


def tfp_flow(d, hidden, steps, inverse=False):
    """TFP's MAF: `tfb.MaskedAutoregressiveFlow` over `tfb.AutoregressiveNetwork` (a
    `tf_keras` layer), the order reversed between steps; with `inverse`, TFP's IAF
    (each step inverted: sampling in one pass)."""
    bijectors = []
    for k in range(steps):
        made = tfb.AutoregressiveNetwork(params=2, hidden_units=[hidden, hidden],
                                         activation="relu", event_shape=(d,))
        maf = tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=made)
        bijectors.append(tfb.Invert(maf) if inverse else maf)
        if k < steps - 1:
            bijectors.append(tfb.Permute(list(range(d))[::-1]))
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), d),
                                       tfb.Chain(bijectors[::-1]))
    dist.log_prob(dist.sample(2, seed=0))  # builds the networks
    return dist


def tfp_train(batches, d, hidden, steps):
    import tf_keras

    dist = tfp_flow(d, hidden, steps)
    variables = dist.trainable_variables
    optimizer = tf_keras.optimizers.Adam(1e-3)

    @tf.function
    def step(xb):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(xb))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    float(step(batches[0]))
    return _loop(step, batches)


def torch_available():
    """`None` if PyTorch, nflows and zuko import, else why not."""
    why = nflows_available()
    if why is None:
        try:
            import zuko  # noqa: F401
        except ImportError as err:
            why = f"not installed ({err.name}; pip install -e '.[bench]')"
    return why


def nflows_maf(d, hidden, steps):
    """nflows' MAF as `sbi` builds it: `MaskedAffineAutoregressiveTransform` with reversals
    between; `num_blocks=1` without residual blocks is two hidden layers."""
    import torch
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.permutations import ReversePermutation

    torch.manual_seed(0)
    layers = []
    for k in range(steps):
        layers.append(MaskedAffineAutoregressiveTransform(
            features=d, hidden_features=hidden, num_blocks=1, use_residual_blocks=False,
            activation=torch.relu))
        if k < steps - 1:
            layers.append(ReversePermutation(d))
    return Flow(CompositeTransform(layers), StandardNormal([d]))


def zuko_maf(d, hidden, steps):
    import torch
    import zuko

    torch.manual_seed(0)
    return zuko.flows.MAF(features=d, transforms=steps, hidden_features=(hidden, hidden))


def torch_train(flow, log_prob, x_batches):
    import torch

    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    batches = [torch.from_numpy(np.asarray(b)) for b in x_batches]

    def step(xb):
        optimizer.zero_grad(set_to_none=True)
        loss = -log_prob(xb).mean()
        loss.backward()
        optimizer.step()
        return loss.detach()

    float(step(batches[0]))
    return _loop(step, batches)

