"""Tests written against the plausible bugs a mutation audit of the conditional,
multi-scale, spline and export code left alive: each test below names the bug it kills.

The references are independent of the code under test: latents recovered by `encode`
(a separate code path from sampling), closed-form logistic and normal densities
written in NumPy, channel splits and shapes computed by hand or by TensorFlow's own
`space_to_depth`, and autodiff Jacobians.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_nice as tn
from test_conditional import dense_steps, serve_fresh
from test_multiscale import jacobian_log_det, randomize, uniform_images


def _latent_spread(model, drawn, rows):
    """The latents of conditional samples `(n, N, d)` (row `i` given `rows[i]`), encoded
    back row by row: mean and standard deviation per row and entry."""
    n, num_rows = drawn.shape[:2]
    latents = [model.encode(drawn[:, i], context=np.repeat(rows[i:i + 1], n, 0)).numpy()
               for i in range(num_rows)]
    latents = np.stack(latents, axis=1)
    return latents.mean(0), latents.std(0)


# --- the temperature of a conditional flow's samples ---------------------------------------


@pytest.fixture(scope="module")
def conditional_flow():
    model = tn.Flow(dense_steps(dim=2), context_shape=(2,), seed=0)
    randomize(model.steps, seed=4, scale=0.4)
    return model


ROWS = np.array([[1.0, -0.5], [-2.0, 1.0]], "float32")


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_conditional_samples_without_a_conditional_prior_follow_the_temperature(
        conditional_flow, temperature):
    # Kills: `sample(n, temperature=T, context=c)` drawing at T = 1 when the flow has no
    # conditional prior. The latents of the samples are N(0, T^2) entry by entry.
    drawn = conditional_flow.sample(6000, temperature=temperature, seed=3, context=ROWS).numpy()
    assert drawn.shape == (6000, 2, 2)
    mean, std = _latent_spread(conditional_flow, drawn, ROWS)
    np.testing.assert_allclose(std, temperature, rtol=0.05)
    np.testing.assert_allclose(mean, 0.0, atol=0.1 * temperature)


def test_the_served_conditional_sample_follows_its_temperature(conditional_flow, tmp_path):
    # Kills: the SavedModel's conditional `sample` ignoring its temperature (checked in a
    # TensorFlow-only process; the latents are recovered in process by `encode`).
    conditional_flow.export(str(tmp_path / "served"))
    _, out = serve_fresh(tmp_path / "served", tmp_path, x=np.zeros((2, 2), "float32"),
                         c=ROWS, cs=ROWS, n=6000, temperature=0.5)
    _, std = _latent_spread(conditional_flow, out["seeded_a"], ROWS)
    np.testing.assert_allclose(std, 0.5, rtol=0.05)
    _, out_t1 = serve_fresh(tmp_path / "served", tmp_path, x=np.zeros((2, 2), "float32"),
                            c=ROWS, cs=ROWS, n=6000)
    _, std_t1 = _latent_spread(conditional_flow, out_t1["seeded_a"], ROWS)
    np.testing.assert_allclose(std_t1, 1.0, rtol=0.05)


# --- the conditional prior -----------------------------------------------------------------


def _logistic_log_pdf(z, loc, scale):
    u = (z - loc) / scale
    return -u - np.log(scale) - 2.0 * np.log1p(np.exp(-u))


def _normal_log_pdf(z, loc, scale):
    return -0.5 * ((z - loc) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi)


@pytest.mark.parametrize("prior,log_pdf", [("logistic", _logistic_log_pdf),
                                           ("normal", _normal_log_pdf)])
def test_a_conditional_prior_is_scored_in_its_own_family(prior, log_pdf):
    # Kills: a conditional prior of a flow with prior="logistic" scored as a normal.
    # The coupling starts as the identity and the permutation reverses, so z = x[:, ::-1].
    reverse = tn.PermutationStep((3,), np.array([2, 1, 0]), name="reverse")
    coupling = tn.CouplingStep((3,), tn.partition_mask("halves", (3,)), hidden_units=(4,),
                               context_shape=(2,), name="coupling")
    model = tn.Flow([reverse, coupling], prior=prior, context_shape=(2,),
                    conditional_prior=True)
    loc = np.array([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]])
    scale = np.array([[0.5, 1.0, 2.0], [1.5, 0.3, 0.8]])
    model.prior_network.kernel.assign(np.concatenate([loc, np.log(scale)], 1).astype("float32"))
    y = np.array([0, 1, 1, 0])
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    expected = log_pdf(x[:, ::-1].astype("float64"), loc[y], scale[y]).sum(1)
    got = model.log_prob(x, context=np.eye(2, dtype="float32")[y]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_a_conditional_prior_after_an_embedding_that_changes_the_size():
    # Kills: the conditional prior's network built for the raw context size (5) instead
    # of the embedded one (2). Reference: the embedding and the prior's dense map by hand.
    keras.utils.set_random_seed(0)
    embedding = keras.layers.Dense(2, name="embedding")
    coupling = tn.CouplingStep((3,), tn.partition_mask("halves", (3,)), hidden_units=(4,),
                               context_shape=(2,), name="coupling")
    model = tn.Flow([coupling], context_shape=(5,), embedding=embedding,
                    conditional_prior=True)
    kernel = np.random.default_rng(1).normal(size=(2, 6)) * 0.3
    model.prior_network.kernel.assign(kernel.astype("float32"))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 3)).astype("float32")
    c = rng.normal(size=(4, 5)).astype("float32")
    e = c @ embedding.kernel.numpy() + embedding.bias.numpy()
    params = e.astype("float64") @ kernel
    expected = _normal_log_pdf(x, params[:, :3], np.exp(params[:, 3:])).sum(1)
    np.testing.assert_allclose(model.log_prob(x, context=c), expected, rtol=1e-5, atol=1e-5)


# --- the data-dependent start of a conditional flow ----------------------------------------


@keras.saving.register_keras_serializable(package="tfp_nice_tests")
class ContextShift(keras.layers.Layer):
    """A coupling network whose shift is `-10 * context`, whatever part A is: a step whose
    output depends on which context row each example is paired with."""

    def call(self, x_a, context=None):
        return -10.0 * context + 0.0 * x_a


def _pairing_flow():
    coupling = tn.CouplingStep((2,), np.array([True, False]), network=ContextShift(),
                               context_shape=(1,), name="shift_by_context")
    return tn.Flow([coupling, tn.ActNormStep((2,), name="actnorm")], context_shape=(1,),
                   seed=0)


def _paired_data(n, seed=0):
    # x_B = 10 c + noise: the coupling given the right row leaves N(0, 1) noise, given
    # another row's context a spread of about 14.
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 1)).astype("float32")
    x = np.concatenate([rng.normal(size=(n, 1)), 10.0 * c + rng.normal(size=(n, 1))], 1)
    return x.astype("float32"), c


def _standardised_by_the_start(model, x, c):
    h = model.encode(x, context=c).numpy()
    np.testing.assert_allclose(h.mean(0), 0.0, atol=0.06)
    np.testing.assert_allclose(h.std(0), 1.0, atol=0.06)


@pytest.mark.parametrize("form", ["array", "dataset"])
def test_the_conditional_data_start_pairs_each_row_with_its_context(form):
    # Kills: pairing rows with other rows' contexts when the start samples 4096 of more
    # rows, or when the data come as a dataset.
    x, c = _paired_data(6000)
    model = _pairing_flow()
    model.compile(keras.optimizers.SGD(0.0))
    if form == "array":
        model.fit(x, c, epochs=1, batch_size=1000, verbose=0)
    else:
        data = tf.data.Dataset.from_tensor_slices((x, c)).shuffle(6000, seed=1).batch(500)
        model.fit(data, epochs=1, verbose=0)
    _standardised_by_the_start(model, x, c)


def test_the_conditional_data_start_leaves_the_validation_rows_out():
    # Kills: the conditional start using the validation rows despite validation_split.
    # The last quarter (Keras's validation rows) is shifted far away.
    x, c = _paired_data(2000)
    x[1500:] += 50.0
    model = _pairing_flow()
    model.compile(keras.optimizers.SGD(0.0))
    model.fit(x, c, epochs=1, batch_size=500, validation_split=0.25, verbose=0)
    _standardised_by_the_start(model, x[:1500], c[:1500])


# --- the factor-out's data start -----------------------------------------------------------


def _channel_images(n, seed=0):
    rng = np.random.default_rng(seed)
    kept = 5.0 + 2.0 * rng.normal(size=(n, 4, 4, 1))
    exits = -3.0 + 0.5 * rng.normal(size=(n, 4, 4, 1)) + np.linspace(0, 4, 16).reshape(4, 4, 1)
    return np.concatenate([kept, exits], -1).astype("float64")


def test_the_factor_outs_start_runs_its_steps_on_the_kept_channels_in_order():
    # Kills: a factor-out's `adapt` starting its inner steps on the exiting channels, or
    # returning (kept, exits) instead of (exits, kept) to the data-started step after it.
    inner = tn.ActNormStep((4, 4, 1), per_channel=True, dtype="float64", name="inner")
    factor_out = tn.FactorOutStep((4, 4, 2), [inner], dtype="float64", name="factor_out")
    after = tn.ActNormStep((32,), dtype="float64", name="after")
    model = tn.Flow([factor_out, after], dtype="float64")
    x = _channel_images(400)
    model.initialize_from_data(x)
    kept = inner.bijector().forward(x[..., :1]).numpy()  # the split by hand
    np.testing.assert_allclose(kept.mean(axis=(0, 1, 2)), 0.0, atol=1e-9)
    np.testing.assert_allclose(kept.std(axis=(0, 1, 2)), 1.0, rtol=1e-6)
    z = model.encode(x).numpy()  # through the forward map, not through adapt
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(z.std(0), 1.0, rtol=1e-6)


# --- shapes and parameters of the multi-scale flow -----------------------------------------


@pytest.mark.parametrize("factor,shape", [(2, (4, 6, 3)), (3, (6, 9, 2))])
def test_squeeze_shape_functions_are_space_to_depths_both_ways(factor, shape):
    # Kills: `inverse_event_shape_tensor` dividing the channels by f instead of f^2.
    bij = tn.Squeeze(factor)
    out = tuple(tf.nn.space_to_depth(tf.zeros((1,) + shape), factor).shape[1:])
    np.testing.assert_array_equal(bij.forward_event_shape_tensor(shape), out)
    np.testing.assert_array_equal(bij.inverse_event_shape_tensor(out), shape)
    assert tuple(bij.forward_event_shape(shape)) == out
    assert tuple(bij.inverse_event_shape(out)) == shape
    batched = (5,) + shape
    np.testing.assert_array_equal(bij.forward_event_shape_tensor(batched), (5,) + out)
    np.testing.assert_array_equal(bij.inverse_event_shape_tensor((5,) + out), batched)


def test_the_multiscale_flows_closing_rescalings_are_per_channel():
    # Kills: the multi-scale flow's closing rescaling made per entry instead of per channel.
    steps = tn.multiscale_steps((8, 8, 2), num_scales=2, steps_per_scale=1,
                                hidden_channels=(4,), rescaling=True, seed=0)
    rescalings = [s for s in tn.steps.walk(steps) if isinstance(s, tn.RescalingStep)]
    assert len(rescalings) == 2
    # after a squeeze of (8, 8, 2): 8 channels; after the factor-out and a second squeeze
    # of (4, 4, 4): 16 channels
    assert [tuple(s.log_scale.shape) for s in rescalings] == [(8,), (16,)]
    assert all(s.per_channel for s in rescalings)


def test_a_conv_networks_context_check_refuses_a_context_of_image_shape():
    # Kills: a context check that compares the last axis only, which a context of
    # image shape (N, h, w, units) would pass.
    net = tn.CouplingConvNet((4,), 2, context_units=3)
    net.build((None, 4, 4, 1))
    x_a = tf.zeros((2, 4, 4, 1))
    assert tuple(net(x_a, context=tf.zeros((2, 3))).shape) == (2, 4, 4, 2)
    with pytest.raises(ValueError, match="takes a context of 3 entries per example"):
        net(x_a, context=tf.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match="takes a context of 3 entries per example"):
        net(x_a, context=tf.zeros((2, 2)))


@pytest.mark.parametrize("kind", ["actnorm", "rescaling"])
def test_per_channel_steps_inverse_log_dets_are_the_autodiff_ones(kind):
    # The inverse direction of the per-channel scalings, against autodiff of the inverse.
    shape = (4, 4, 3)
    step = (tn.ActNormStep(shape, per_channel=True, dtype="float64") if kind == "actnorm"
            else tn.RescalingStep(shape, per_channel=True, dtype="float64"))
    step.log_scale.assign([0.3, -0.7, 1.1])
    if kind == "actnorm":
        step.shift.assign([0.5, -1.0, 2.0])
    bij = step.bijector()
    y = np.random.default_rng(0).normal(size=(3,) + shape)
    expected = jacobian_log_det(bij.inverse, y)
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(tf.identity(y), event_ndims=3),
                               expected, atol=1e-10)
    np.testing.assert_allclose(expected, -16 * 0.7 * np.ones(3), atol=1e-10)  # -h w sum(s)


def test_bits_per_dim_of_a_multichannel_multiscale_flow_counts_every_channel():
    # D = h * w * c = 48 for 4x4x3 images of 256 levels: bits/dim = (nll + D log 256) /
    # (D log 2), by hand from the evaluated NLL.
    steps = tn.multiscale_steps((4, 4, 3), num_scales=1, steps_per_scale=1,
                                hidden_channels=(4,), seed=0)
    model = tn.Flow(steps, num_levels=256)
    model.compile(keras.optimizers.Adam(0.0))
    x = uniform_images(16, (4, 4, 3)).astype("float32")
    logs = model.evaluate(x, batch_size=16, verbose=0, return_dict=True)
    nll = -float(np.mean(model.log_prob(x)))
    assert logs["nll"] == pytest.approx(nll, rel=1e-5)
    d = 4 * 4 * 3
    expected = (nll + d * math.log(256)) / (d * math.log(2))
    assert logs["bits_per_dim"] == pytest.approx(expected, rel=1e-5)
    assert float(model.bits_per_dim(nll)) == pytest.approx(expected, rel=1e-5)
