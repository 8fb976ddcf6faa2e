"""The contenders of the image-flow benchmark (section 8): Glow's layout at matched sizes.

Every contender is a two-scale flow over 28x28x1 images: at each scale a squeeze, then
`steps_per_scale` steps of ActNorm, an invertible 1x1 convolution (LU) and an affine
channel coupling whose network is 3x3 -> 1x1 -> 3x3 convolutions of `HIDDEN` channels
(ReLU, the last at zero), with half the channels leaving between the scales; a normal
prior; Adam(1e-3), float32, batch 64. What differs is each library's own exit and
prior: ours is Glow's learned prior (a 3x3 convolution of the kept half), TFP's
`GlowDefaultExitNetwork` likewise, normflows' a learned diagonal Gaussian per exit.

Each `make_*` returns a function that runs one pass over a list of batches and blocks
until it is done.
"""

import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn
from contenders import max_likelihood_loop

tfb, tfd = tfp.bijectors, tfp.distributions

SHAPE = (28, 28, 1)
SCALES = 2
HIDDEN = 64


def image_batches(batch, steps, seed=0):
    """Smooth random images in (0, 1): the same batches for every contender."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch * steps, 7, 7, 1))
    x = np.kron(x, np.ones((1, 4, 4, 1))) + 0.3 * rng.normal(size=(batch * steps,) + SHAPE)
    x = 1.0 / (1.0 + np.exp(-x))
    return x.astype(np.float32)


def conv_gflops(rounds=5):
    """The machine's rate on the benchmark's biggest convolution (3x3, 64 -> 64 channels
    at 14x14, batch 64), forward only, float32."""
    x = tf.random.normal((64, 14, 14, HIDDEN))
    kernel = tf.random.normal((3, 3, HIDDEN, HIDDEN))
    conv = tf.function(lambda: tf.nn.conv2d(x, kernel, 1, "SAME"))
    conv().numpy()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(20):
            out = conv()
        out.numpy()
        best = min(best, (time.perf_counter() - start) / 20)
    return 2 * 64 * 14 * 14 * 9 * HIDDEN * HIDDEN / best / 1e9


def _steps(steps_per_scale):
    return tn.multiscale_steps(SHAPE, num_scales=SCALES, steps_per_scale=steps_per_scale,
                               hidden_channels=(HIDDEN, HIDDEN), coupling="affine",
                               learned_prior=True, logit_alpha=None, seed=0)


def tfp_nice_fit(x, steps_per_scale, batch, jit_compile=False):
    """`tn.Flow(tn.multiscale_steps(...))` trained by `model.fit`, one epoch per call;
    `jit_compile=True` is Keras' `compile(jit_compile=True)`: the step compiled by XLA."""
    keras.utils.set_random_seed(0)
    model = tn.Flow(_steps(steps_per_scale), prior="normal")
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
    model.fit(x[:batch * 2], epochs=1, batch_size=batch, verbose=0)  # warm-up, data start

    def run():
        model.fit(x, epochs=1, batch_size=batch, verbose=0, shuffle=False)
    return run


def tfp_nice_raw(batches, steps_per_scale):
    """The same flow's `distribution` in a raw `tf.function` Adam step."""
    keras.utils.set_random_seed(0)
    model = tn.Flow(_steps(steps_per_scale), prior="normal")
    model.initialize_from_data(batches[0])
    return max_likelihood_loop(model.distribution, model.trainable_weights, batches, False)


def tfp_glow(batches, steps_per_scale):
    """TFP's `tfb.Glow` with its own `tf_keras` networks (`GlowDefaultNetwork` of `HIDDEN`
    channels, `GlowDefaultExitNetwork`), a raw `tf.function` Adam step."""
    tf.random.set_seed(0)
    glow = tfb.Glow(output_shape=SHAPE, num_glow_blocks=SCALES,
                    num_steps_per_block=steps_per_scale,
                    coupling_bijector_fn=lambda shape: tfb.GlowDefaultNetwork(
                        shape, num_hidden=HIDDEN),
                    exit_bijector_fn=tfb.GlowDefaultExitNetwork, seed=0)
    flow = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), int(np.prod(SHAPE))),
                                       glow)
    flow.log_prob(batches[0])  # builds the networks
    return max_likelihood_loop(flow, list(flow.trainable_variables), batches, False)


def normflows_available():
    """`None` if PyTorch and normflows import, else why not."""
    try:
        import normflows  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        return f"not installed ({err.name}; pip install -e '.[bench]')"
    return None


def normflows_glow(x_batches, steps_per_scale):
    """normflows' Glow (`GlowBlock`s in a `MultiscaleFlow`, its MNIST-sized example's
    layout), Adam in a plain PyTorch loop, on the CPU."""
    import normflows as nf
    import torch

    torch.manual_seed(0)
    c, h, w = SHAPE[2], SHAPE[0], SHAPE[1]
    flows, merges, q0 = [], [], []
    for i in range(SCALES):
        level = [nf.flows.GlowBlock(c * 2 ** (SCALES + 1 - i), HIDDEN, split_mode="channel",
                                    scale=True) for _ in range(steps_per_scale)]
        flows.append(level + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (c * 2 ** (SCALES - i), h // 2 ** (SCALES - i), w // 2 ** (SCALES - i))
        else:
            latent = (c * 2 ** (SCALES + 1), h // 2 ** SCALES, w // 2 ** SCALES)
        q0.append(nf.distributions.DiagGaussian(latent))
    model = nf.MultiscaleFlow(q0, flows, merges, class_cond=False)
    batches = [torch.from_numpy(np.ascontiguousarray(b.transpose(0, 3, 1, 2)))
               for b in x_batches]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(b):
        optimizer.zero_grad()
        loss = model.forward_kld(b)
        loss.backward()
        optimizer.step()
        return loss

    step(batches[0])  # ActNorm's data start

    def run():
        for b in batches:
            loss = step(b)
        float(loss)
    return run


__all__ = ["conv_gflops", "image_batches", "normflows_available", "normflows_glow",
           "tfp_glow", "tfp_nice_fit", "tfp_nice_raw"]
