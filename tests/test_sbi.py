"""tn.sbi: posterior estimators over a TFP prior's support, and their diagnostics, against
references that do not come from the code under test (autodiff Jacobians, the change of
variables written out, numerical integration, conjugate posteriors in closed form)."""

import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn
from helpers import repo_module

tfd = tfp.distributions
tfb = tfp.bijectors


def _perturb(model, scale=0.3, seed=0):
    """Random weights everywhere (a fresh step is the identity, which would hide a lot)."""
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign(w.numpy() + scale * rng.normal(size=w.shape).astype(w.dtype))


def _box(dtype="float32"):
    return tfd.Independent(tfd.Uniform(np.array([-1.0, 0.0], dtype),
                                       np.array([2.0, 0.5], dtype)), 1)


def _started(model, theta, x):
    model.initialize_from_data(theta, x)
    return model


# --- the support -------------------------------------------------------------------------

@pytest.mark.parametrize("flow,transformer", [("coupling", "affine"),
                                              ("coupling", "spline"),
                                              ("autoregressive", "affine"),
                                              ("autoregressive", "spline")])
def test_log_prob_is_the_change_of_variables_by_autodiff_in_float64(flow, transformer):
    prior = _box("float64")
    theta = prior.sample(300, seed=(1, 2)).numpy()
    x = np.concatenate([theta, theta[:, :1] ** 2], axis=1) + 0.1
    model = _started(tn.sbi.posterior_flow(prior, (3,), flow=flow, transformer=transformer,
                                           num_steps=2, hidden_units=(8,), dtype="float64"),
                     theta, x)
    _perturb(model)
    t, c = tf.constant(theta[:16]), tf.constant(x[:16])
    with tf.GradientTape() as tape:
        tape.watch(t)
        z = model.encode(t, context=c)
    jac = tape.batch_jacobian(z, t)
    by_hand = (tfd.Normal(np.float64(0), np.float64(1)).log_prob(z).numpy().sum(axis=1)
               + np.linalg.slogdet(jac.numpy())[1])
    np.testing.assert_allclose(model.log_prob(t, context=c).numpy(), by_hand, rtol=1e-9,
                               atol=1e-9)


@pytest.mark.parametrize("flow,scale", [("coupling", 0.2), ("autoregressive", 0.05)])
def test_the_density_integrates_to_one_over_the_prior_box(flow, scale):
    """log_prob is the density on the support: its integral over the box is 1 (a missing or
    flipped support log-det, or a density of the unconstrained space, is far from it).
    The perturbation keeps the mass off the box's edges, where the grid cannot follow it
    (a MADE perturbed by 0.2 puts a third of its draws in the outer cells)."""
    prior = _box("float64")
    theta = prior.sample(500, seed=(3, 4)).numpy()
    x = theta + 0.3
    model = _started(tn.sbi.posterior_flow(prior, (2,), flow=flow, transformer="affine",
                                           num_steps=2, hidden_units=(8,), dtype="float64"),
                     theta, x)
    _perturb(model, scale)
    # midpoint rule on a fine grid; the density is smooth inside and goes to 0 at the edges
    n = 400
    a = -1.0 + 3.0 * (np.arange(n) + 0.5) / n
    b = 0.5 * (np.arange(n) + 0.5) / n
    grid = np.stack(np.meshgrid(a, b, indexing="ij"), -1).reshape(-1, 2)
    context = np.broadcast_to(np.array([[0.4, 0.6]]), grid.shape)
    density = np.exp(model.log_prob(grid, context=context).numpy())
    assert density.sum() * (3.0 / n) * (0.5 / n) == pytest.approx(1.0, abs=5e-3)


def test_samples_never_leave_the_support_which_a_plain_flow_would():
    prior = _box()
    theta = prior.sample(1000, seed=(5, 6)).numpy()
    x = theta + 0.05 * np.random.default_rng(0).normal(size=theta.shape).astype("float32")
    model = _started(tn.sbi.posterior_flow(prior, (2,), num_steps=2, hidden_units=(8,)),
                     theta, x)
    draws = model.sample(5000, context=x[:2], seed=1).numpy()
    assert np.isfinite(draws).all()
    assert (draws[..., 0] > -1).all() and (draws[..., 0] < 2).all()
    assert (draws[..., 1] > 0).all() and (draws[..., 1] < 0.5).all()
    # the same start without the support leaks: the check above can fail
    plain = tn.Flow(model.steps[1:], context_shape=(2,), seed=0)
    plain.initialize_from_data(theta, x)
    leaked = plain.sample(5000, context=x[:2], seed=1).numpy()
    assert ((leaked[..., 1] < 0) | (leaked[..., 1] > 0.5)).any()


def test_a_joint_prior_is_flattened_in_nest_order_and_mapped_part_by_part():
    prior = tfd.JointDistributionNamed(dict(
        scale=tfd.LogNormal(np.float64(0), np.float64(0.5)),
        loc=tfd.Independent(tfd.Normal(np.zeros(2), np.float64(1)), 1),
        frac=tfd.Beta(np.float64(2), np.float64(3))))
    draws = prior.sample(400, seed=(7, 8))
    rows = tn.sbi.flatten_parameters(prior, draws)
    assert rows.shape == (400, 4)
    # tf.nest.flatten orders a dict's keys: frac, loc (2), scale
    np.testing.assert_array_equal(rows[:, 0], draws["frac"].numpy())
    np.testing.assert_array_equal(rows[:, 1:3], draws["loc"].numpy())
    np.testing.assert_array_equal(rows[:, 3], draws["scale"].numpy())
    back = tn.sbi.unflatten_parameters(prior, rows)
    np.testing.assert_array_equal(back["loc"].numpy(), draws["loc"].numpy())
    x = rows[:, 1:3] * rows[:, 3:] + rows[:, :1]
    model = _started(tn.sbi.posterior_flow(prior, (2,), transformer="affine", num_steps=2,
                                           hidden_units=(8,), dtype="float64"), rows, x)
    _perturb(model)
    # the support step by hand: frac = sigmoid(u0), loc = u1:3, scale = exp(u3)
    support = model.steps[0]
    u = support.bijector().forward(rows[:8]).numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-u[:, 0])), rows[:8, 0], rtol=1e-10)
    np.testing.assert_allclose(u[:, 1:3], rows[:8, 1:3], rtol=1e-12)
    np.testing.assert_allclose(np.exp(u[:, 3]), rows[:8, 3], rtol=1e-10)
    ildj = support.bijector().forward_log_det_jacobian(rows[:8], 1).numpy()
    by_hand = -(np.log(rows[:8, 0]) + np.log1p(-rows[:8, 0]) + np.log(rows[:8, 3]))
    np.testing.assert_allclose(ildj, by_hand, rtol=1e-9)
    # and the whole flow's density, by autodiff
    t, c = tf.constant(rows[:8]), tf.constant(x[:8])
    with tf.GradientTape() as tape:
        tape.watch(t)
        z = model.encode(t, context=c)
    jac = tape.batch_jacobian(z, t).numpy()
    expect = (-0.5 * (z.numpy() ** 2).sum(1) - 2 * math.log(2 * math.pi)
              + np.linalg.slogdet(jac)[1])
    np.testing.assert_allclose(model.log_prob(t, context=c).numpy(), expect, rtol=1e-9)


def test_a_joint_prior_whose_support_depends_on_a_part_trains_exports_but_does_not_save(
        tmp_path):
    prior = tfd.JointDistributionSequential([
        tfd.Uniform(np.float32(1), np.float32(2)),
        lambda upper: tfd.Uniform(np.float32(0), upper)])
    rows = tn.sbi.flatten_parameters(prior, prior.sample(300, seed=(1, 2)))
    model = tn.sbi.posterior_flow(prior, (2,), transformer="affine", num_steps=2,
                                  hidden_units=(8,))
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(rows, rows + 0.1, epochs=1, batch_size=100, verbose=0)
    draws = model.sample(2000, context=rows[:1] + 0.1, seed=0).numpy()[:, 0]
    assert ((draws[:, 1] > 0) & (draws[:, 1] < draws[:, 0])).all()  # below its own upper
    with pytest.raises(NotImplementedError, match="export"):
        model.save(str(tmp_path / "m.keras"))
    model.export(str(tmp_path / "saved"))
    served = tf.saved_model.load(str(tmp_path / "saved"))
    lp = served.signatures["log_prob"](x=tf.constant(rows[:4]),
                                       context=tf.constant(rows[:4] + 0.1))["log_prob"]
    np.testing.assert_allclose(lp.numpy(), model.log_prob(rows[:4], context=rows[:4] + 0.1),
                               rtol=1e-5, atol=1e-5)


def test_a_posterior_saves_and_loads_with_its_support_and_standardisation(tmp_path):
    prior = tfd.JointDistributionNamed(dict(
        rate=tfd.Gamma(np.float32(2), np.float32(1)),
        box=tfd.Independent(tfd.Uniform(np.float32([0, -3]), np.float32([1, 3])), 1)))
    rows = tn.sbi.flatten_parameters(prior, prior.sample(500, seed=(1, 2)))
    x = 100 * rows + 7
    model = tn.sbi.posterior_flow(prior, (3,), flow="autoregressive", transformer="spline",
                                  num_steps=2, hidden_units=(8,))
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(rows, x, epochs=1, batch_size=100, verbose=0)
    path = str(tmp_path / "posterior.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is tn.sbi.PosteriorFlow and not loaded.needs_data_init
    np.testing.assert_allclose(loaded.observation_mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(loaded.log_prob(rows[:5], context=x[:5]),
                               model.log_prob(rows[:5], context=x[:5]), rtol=1e-6, atol=1e-6)
    assert isinstance(loaded.steps[0].support, tfb.JointMap)


# --- the standardisation -----------------------------------------------------------------

def test_standardisation_comes_from_the_training_pairs():
    prior = tfd.Independent(tfd.Normal(np.float32([0, 0]), np.float32([1, 1])), 1)
    theta = prior.sample(1000, seed=(1, 2)).numpy()
    x = np.concatenate([1e3 * theta + 50, np.full((1000, 1), 3.0, "float32")], axis=1)
    model = _started(tn.sbi.posterior_flow(prior, (3,), num_steps=1, hidden_units=(4,)),
                     theta, x)
    np.testing.assert_allclose(model.observation_mean.numpy(), x.mean(0), rtol=1e-4)
    np.testing.assert_allclose(model.observation_std.numpy()[:2], x[:, :2].std(0), rtol=1e-4)
    assert model.observation_std.numpy()[2] == 1.0  # a constant entry is left as it is
    assert not any("standardize" in w.path for w in model.trainable_weights)


def test_units_do_not_matter_log_prob_is_in_the_users_units():
    """Training on `(a theta + b, c x + d)` gives the same posterior as on `(theta, x)`,
    moved: log q'(a t + b | c x + d) = log q(t | x) - sum(log a). Without the parameters'
    or the observations' standardisation, the two trainings differ by O(1) nats. (Keras
    feeds a conditional flow's arrays in float32, so the offsets stay where float32 holds
    their spread to about 1e-4.)"""
    a, b = np.float32([50.0, 0.01]), np.float32([-3.0, 10.0])
    c, d = np.float32(1e-2), np.float32(5.0)
    prior = tfd.Independent(tfd.Normal(np.float32([0, 0]), np.float32([1, 1])), 1)
    moved_prior = tfd.Independent(tfd.Normal(b, a), 1)
    theta = prior.sample(512, seed=(1, 2)).numpy()
    x = theta + 0.3 * np.random.default_rng(1).normal(size=theta.shape).astype("float32")
    out = []
    for t, o, p in ((theta, x, prior), (a * theta + b, c * x + d, moved_prior)):
        keras.utils.set_random_seed(0)
        model = tn.sbi.posterior_flow(p, (2,), transformer="affine", num_steps=2,
                                      hidden_units=(16,))
        model.compile(keras.optimizers.SGD(0.05))
        model.fit(t, o, epochs=3, batch_size=128, shuffle=False, verbose=0)
        out.append(model.log_prob(t[:20], context=o[:20]).numpy())
    shift = out[0] - out[0].mean()
    assert np.abs(shift).max() > 0.1  # the posterior is not flat: the check has teeth
    np.testing.assert_allclose(out[1], out[0] - np.log(a).sum(), atol=5e-3)


# --- the simulations ------------------------------------------------------------------

def test_fit_leaves_out_bad_simulations_and_counts_them():
    prior = _box()
    theta = prior.sample(400, seed=(1, 2)).numpy()
    x = theta.copy()
    x[:3, 0] = np.nan
    x[3, 1] = np.inf
    theta[4] = [5.0, 0.2]  # outside the box
    model = tn.sbi.posterior_flow(prior, (2,), num_steps=1, hidden_units=(4,))
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.warns(UserWarning, match="left out 5 of 400 simulations"):
        history = model.fit(theta, x, epochs=1, batch_size=100, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert np.isfinite(model.observation_mean.numpy()).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # clean pairs: nothing to say
        model.fit(theta[5:], x[5:], epochs=1, batch_size=100, verbose=0)
    with pytest.raises(ValueError, match="nothing is left to train on"):
        model.fit(theta[:3], x[:3], epochs=1, verbose=0)


def test_the_default_estimator_is_an_autoregressive_spline_flow_of_sbis_size():
    """The default the sbibm table chose (`benchmarks/README.md`): five autoregressive spline
    steps (a MAF with spline transformers) over MADEs of 2x50, orders alternating, after the
    support and the standardisation; it takes a one-parameter prior too."""
    model = tn.sbi.posterior_flow(_box(), (2,))
    steps = model.steps[2:]
    assert [type(s).__name__ for s in model.steps[:2]] == ["SupportStep", "StandardizeStep"]
    assert len(steps) == 5 and all(isinstance(s, tn.AutoregressiveStep) for s in steps)
    assert all(isinstance(s.transformer, tn.Spline) and not s.inverse for s in steps)
    assert all(s.hidden_units == (50, 50) for s in steps)
    assert [list(s.order) for s in steps[:2]] == [[0, 1], [1, 0]]
    one = tn.sbi.posterior_flow(tfd.Uniform(np.float32(0), np.float32(1)), (2,))
    assert one.event_shape == (1,)


def test_bad_choices_have_clear_errors():
    prior = _box()
    with pytest.raises(ValueError, match="flow must be one of"):
        tn.sbi.posterior_flow(prior, (2,), flow="maf")
    with pytest.raises(ValueError, match="flow='autoregressive'"):
        tn.sbi.posterior_flow(tfd.Uniform(np.float32(0), np.float32(1)), (2,), flow="coupling")
    with pytest.raises(TypeError, match="tfd.Distribution"):
        tn.sbi.posterior_flow("normal", (2,))
    one = tn.sbi.posterior_flow(tfd.Uniform(np.float32(0), np.float32(1)), (2,),
                                flow="autoregressive", num_steps=1, hidden_units=(4,))
    assert one.event_shape == (1,)
    with pytest.raises(ValueError, match="2 parts, but the parameters hold 1"):
        tn.sbi.flatten_parameters(tfd.JointDistributionSequential(
            [tfd.Normal(0.0, 1.0), tfd.Normal(0.0, 1.0)]), [np.zeros((3,))])


# --- diagnostics on an exact posterior --------------------------------------------------

SIGMA = 0.5


class ExactPosterior:
    """theta ~ N(0, I), x ~ N(theta, SIGMA^2 I): theta | x ~ N(x / (1 + SIGMA^2), s^2 I),
    s^2 = SIGMA^2 / (1 + SIGMA^2); `scale` and `shift` spoil it on purpose."""

    def __init__(self, scale=1.0, shift=0.0):
        self.sd = scale * math.sqrt(SIGMA ** 2 / (1 + SIGMA ** 2))
        self.shift = shift

    def _mean(self, x):
        return np.asarray(x) / (1 + SIGMA ** 2) + self.shift

    def sample(self, n, context, seed=0):
        rng = np.random.default_rng(seed)
        mean = self._mean(context)
        return mean[None] + self.sd * rng.normal(size=(n,) + mean.shape)

    def log_prob(self, theta, context):
        z = (np.asarray(theta) - self._mean(context)) / self.sd
        return (-0.5 * z ** 2 - math.log(self.sd) - 0.5 * math.log(2 * math.pi)).sum(-1)


def _simulations(n, seed=0):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(n, 2))
    return theta, theta + SIGMA * rng.normal(size=(n, 2))


def test_sbc_ranks_are_uniform_for_the_exact_posterior_and_not_for_a_narrow_one():
    theta, x = _simulations(1000)
    ranks = tn.sbi.sbc_ranks(ExactPosterior(), theta, x, num_posterior_samples=99)
    assert ranks.shape == (1000, 2) and ranks.min() >= 0 and ranks.max() <= 99
    assert (tn.sbi.sbc_uniformity(ranks, 99) > 0.01).all()
    narrow = tn.sbi.sbc_ranks(ExactPosterior(scale=0.7), theta, x, num_posterior_samples=99)
    assert (tn.sbi.sbc_uniformity(narrow, 99) < 1e-4).all()
    shifted = tn.sbi.sbc_ranks(ExactPosterior(shift=0.2), theta, x, num_posterior_samples=99)
    assert (tn.sbi.sbc_uniformity(shifted, 99) < 1e-4).all()
    with pytest.raises(ValueError, match="ranks must lie in 0..98"):
        tn.sbi.sbc_uniformity(ranks + 1, 98)


def test_plot_sbc_draws_both_kinds(tmp_path):
    theta, x = _simulations(200)
    ranks = tn.sbi.sbc_ranks(ExactPosterior(), theta, x, num_posterior_samples=49)
    for kind in ("ecdf", "hist"):
        fig = tn.sbi.plot_sbc(ranks, 49, names=["a", "b"], kind=kind,
                              path=str(tmp_path / f"{kind}.png"))
        assert len(fig.axes) == 2 and (tmp_path / f"{kind}.png").stat().st_size > 0


def test_expected_coverage_is_the_level_for_the_exact_posterior_only():
    theta, x = _simulations(600, seed=1)
    levels = (0.2, 0.5, 0.9)
    exact = tn.sbi.expected_coverage(ExactPosterior(), theta, x, levels,
                                     num_posterior_samples=500)
    for level in levels:  # binomial sd of 600 draws: at most 0.02
        assert exact[level] == pytest.approx(level, abs=0.07)
    narrow = tn.sbi.expected_coverage(ExactPosterior(scale=0.6), theta, x, levels,
                                      num_posterior_samples=500)
    assert all(narrow[level] < level - 0.15 for level in levels[1:])
    wide = tn.sbi.expected_coverage(ExactPosterior(scale=1.6), theta, x, levels,
                                    num_posterior_samples=500)
    assert all(wide[level] > level + 0.05 for level in levels[:2])


@pytest.mark.parametrize("early_stopping", [False, True])
def test_c2st_is_a_half_for_one_distribution_and_near_one_for_two(early_stopping):
    rng = np.random.default_rng(0)
    same = tn.sbi.c2st(rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)),
                       early_stopping=early_stopping)
    assert same == pytest.approx(0.5, abs=0.05)
    apart = tn.sbi.c2st(rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)) + 2.0,
                        early_stopping=early_stopping)
    assert apart > 0.8
    narrow = tn.sbi.c2st(rng.normal(size=(1000, 2)), 0.7 * rng.normal(size=(1000, 2)),
                         early_stopping=early_stopping)  # a too-narrow posterior fails
    assert narrow > 0.56
    with pytest.raises(ValueError, match="one D"):
        tn.sbi.c2st(np.zeros((10, 2)), np.zeros((10, 3)))


def test_c2st_early_stopping_trains_a_different_classifier():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(1000, 2)), 0.7 * rng.normal(size=(1000, 2))
    assert tn.sbi.c2st(a, b, early_stopping=True) != tn.sbi.c2st(a, b)


# --- summary networks ------------------------------------------------------------------

def test_a_deep_set_ignores_the_members_order_the_padding_and_its_length():
    rng = np.random.default_rng(0)
    net = tn.sbi.DeepSet(output_units=3, features=2, member_units=(8, 8), head_units=(8,),
                         masked=True)
    members = rng.normal(size=(4, 3, 2)).astype("float32")

    def padded(m, length, fill):
        rows = np.full((len(m), length, 3), fill, "float32")
        rows[:, :, 2] = 0.0
        rows[:, :m.shape[1], :2] = m
        rows[:, :m.shape[1], 2] = 1.0
        return rows

    base = net(padded(members, 5, 0.0)).numpy()
    np.testing.assert_allclose(net(padded(members[:, ::-1], 5, 0.0)).numpy(), base, atol=1e-5)
    np.testing.assert_allclose(net(padded(members, 9, 7.0)).numpy(), base, atol=1e-5)
    # a member fewer is another set
    assert np.abs(net(padded(members[:, :2], 5, 0.0)).numpy() - base).max() > 1e-3
    with pytest.raises(ValueError, match=r"rows of shape \(max_members, 3\)"):
        net(np.zeros((2, 4, 2), "float32"))


def test_summary_networks_standardise_their_own_input_from_the_members():
    rng = np.random.default_rng(1)
    rows = np.zeros((50, 6, 3), "float32")
    rows[:, :, :2] = rng.normal([10.0, -4.0], [3.0, 0.1], size=(50, 6, 2))
    rows[:, :4, 2] = 1.0
    rows[:, 4:, :2] = 1e6  # padding that must not enter the statistics
    net = tn.sbi.DeepSet(output_units=2, features=2, masked=True)
    net.adapt(rows)
    present = rows[:, :4, :2].reshape(-1, 2)
    np.testing.assert_allclose(net.feature_mean.numpy(), present.mean(0), rtol=1e-5)
    np.testing.assert_allclose(net.feature_std.numpy(), present.std(0), rtol=1e-4)
    series = rng.normal([1.0, 100.0], [2.0, 0.5], size=(20, 40, 2)).astype("float32")
    ts = tn.sbi.TimeSeriesNet(output_units=2, channels=2, filters=(4,))
    ts.adapt(series)
    np.testing.assert_allclose(ts.feature_std.numpy(), series.reshape(-1, 2).std(0), rtol=1e-4)


def test_a_set_posterior_trains_on_sets_of_varying_size_and_saves(tmp_path):
    """theta ~ N(0, 1), members ~ N(theta, 1), 1..8 of them: the exact posterior is
    N(sum / (n + 1), 1 / (n + 1)); a short training gets its mean and its narrowing with n."""
    rng = np.random.default_rng(0)
    n_sims, most = 4000, 8
    theta = rng.normal(size=(n_sims, 1)).astype("float32")
    sizes = rng.integers(1, most + 1, size=n_sims)
    rows = np.zeros((n_sims, most, 2), "float32")
    for i, n in enumerate(sizes):
        rows[i, :n, 0] = theta[i, 0] + rng.normal(size=n)
        rows[i, :n, 1] = 1.0
    prior = tfd.Independent(tfd.Normal(np.float32([0.0]), np.float32([1.0])), 1)
    keras.utils.set_random_seed(0)
    net = tn.sbi.DeepSet(output_units=4, features=1, member_units=(32, 32),
                         head_units=(32,), masked=True)
    model = tn.sbi.posterior_flow(prior, (most, 2), flow="autoregressive",
                                  transformer="affine", num_steps=2, hidden_units=(32,),
                                  embedding=net)
    model.compile(keras.optimizers.Adam(3e-3))
    model.fit(theta, rows, epochs=15, batch_size=128, verbose=0)
    np.testing.assert_allclose(net.feature_mean.numpy(),
                               rows[rows[..., 1] > 0][:, 0].mean(keepdims=True), rtol=1e-4)
    for n in (1, 8):
        observed = np.zeros((1, most, 2), "float32")
        observed[0, :n, 0] = 0.8
        observed[0, :n, 1] = 1.0
        draws = model.sample(4000, context=observed, seed=1).numpy()[:, 0, 0]
        assert draws.mean() == pytest.approx(0.8 * n / (n + 1), abs=0.15)
        assert draws.std() == pytest.approx(1 / math.sqrt(n + 1), rel=0.25)
    path = str(tmp_path / "set.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.log_prob(theta[:4], context=rows[:4]),
                               model.log_prob(theta[:4], context=rows[:4]), rtol=1e-5,
                               atol=1e-5)


# --- the set example's reference ----------------------------------------------------------

def _example(name):
    return repo_module(f"examples/{name}.py", name)


def test_the_set_examples_exact_posterior_is_prior_times_likelihood_normalised():
    """The Normal-Inverse-Gamma update against the prior (TFP's joint log-density) times
    the normal likelihood of the set, normalised on a grid."""
    ex = _example("sbi_normal_sets")
    rng = np.random.default_rng(3)
    theta, sets = ex.simulate(3, rng)
    post = ex.exact_posterior(sets)
    s2 = np.linspace(0.02, 12.0, 500)
    mu = np.linspace(-8.0, 8.0, 500)
    grid_s2, grid_mu = np.meshgrid(s2, mu, indexing="ij")
    cell = (s2[1] - s2[0]) * (mu[1] - mu[0])
    for i in range(3):
        members = sets[i, sets[i, :, 1] > 0.5, 0].astype(np.float64)
        log_prior = ex.PRIOR.log_prob([grid_s2.astype("float32"),
                                       grid_mu.astype("float32")]).numpy().astype(np.float64)
        log_lik = sum(-0.5 * np.log(2 * np.pi * grid_s2) - (v - grid_mu) ** 2 / (2 * grid_s2)
                      for v in members)
        unnorm = np.exp(log_prior + log_lik - (log_prior + log_lik).max())
        by_grid = unnorm / (unnorm.sum() * cell)
        exact = np.exp(ex.exact_log_prob(np.stack([grid_s2, grid_mu], -1),
                                         *(p[i] for p in post)))
        assert exact.sum() * cell == pytest.approx(1.0, abs=0.02)
        assert np.abs(exact - by_grid).max() < 0.02 * exact.max()
        draws = ex.exact_draws(20000, *(p[[i]] for p in post), rng)[:, 0]
        np.testing.assert_allclose(draws.mean(0), [
            (grid_s2 * exact).sum() * cell, (grid_mu * exact).sum() * cell], rtol=0.05,
            atol=0.03)


def test_a_standardize_step_standardises_any_scale_exactly_and_is_not_trained():
    """Against NumPy: entries of spread 1e-5 and 1e3 come out with unit spread (an additive
    guard on the variance, as ActNorm's start has, would leave the first near 0.1); a
    constant entry keeps scale 1; the log-det is -sum(log std)."""
    rng = np.random.default_rng(0)
    h = np.stack([5.0 + 1e-5 * rng.normal(size=500), np.full(500, 2.0),
                  1e3 * rng.normal(size=500)], axis=1)
    step = tn.StandardizeStep((3,), dtype="float64")
    out = step.adapt(h).numpy()
    std = h.std(0)
    np.testing.assert_allclose(out[:, [0, 2]].std(0), [1.0, 1.0], rtol=1e-9)
    np.testing.assert_allclose(out.mean(0), [0.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(out[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(step.bijector().forward_log_det_jacobian(h[:4], 1).numpy(),
                               -np.log(std[[0, 2]]).sum(), rtol=1e-9)
    assert step.trainable_weights == []


def test_a_joint_prior_with_sample_parts_has_a_saveable_support_equal_to_tfps():
    """`tfd.Sample` of an elementwise-supported distribution is recorded as that public
    bijector; the map and log-det stay TFP's own."""
    prior = tfd.JointDistributionNamed(dict(a=tfd.Sample(tfd.HalfNormal(1.0), 3),
                                            b=tfd.Normal(0.0, 1.0)))
    ours = tn.sbi.prior_support(prior)
    tn.sbi.support.bijector_config(ours)  # raised NotImplementedError before
    theirs = prior.experimental_default_event_space_bijector()
    rng = np.random.default_rng(0)
    u = {"a": rng.normal(size=(4, 3)).astype("float32"),
         "b": rng.normal(size=(4,)).astype("float32")}
    for key in u:
        np.testing.assert_allclose(ours.forward(u)[key], theirs.forward(u)[key], rtol=1e-6)
    np.testing.assert_allclose(ours.forward_log_det_jacobian(u, {"a": 1, "b": 0}),
                               theirs.forward_log_det_jacobian(u), rtol=1e-5)


def test_c2st_gives_the_same_score_with_its_folds_fitted_at_once():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(300, 2)), rng.normal(0.5, 1.0, size=(300, 2))
    assert tn.sbi.c2st(a, b, n_jobs=2) == tn.sbi.c2st(a, b)


# --- the benchmark's timing guard -----------------------------------------------------------

def _sbibm_run():
    return repo_module("benchmarks/sbibm_run.py", "sbibm_run")


def test_the_sbibm_runner_compares_seconds_only_from_one_machine():
    """`--half-sbi` trains ours for half of sbi's cached seconds; those seconds mean
    something only if sbi's row was timed on this CPU model at a similar matmul rate."""
    run = _sbibm_run()
    here = "Intel(R) Xeon(R) Processor"
    row = {"matmul_gflops": 165.0, "cpu": here}
    assert run.same_machine(row, 114.0, here)  # the spread of one machine's rate
    assert run.same_machine(row, 165.0, here)
    assert not run.same_machine(row, 90.0, here)  # 45% slower: another machine
    assert not run.same_machine(row, 165.0, "AMD EPYC 7B13")
    assert not run.same_machine({"matmul_gflops": 165.0}, 165.0, here)  # no CPU recorded
    assert not run.same_machine({"cpu": here}, 165.0, here)  # no rate recorded
    assert isinstance(run.cpu_model(), str) and run.cpu_model()


def test_the_sbibm_runners_time_limit_keeps_the_weights_it_had_within_the_limit():
    """A half-time row is scored with the best weights as of the last epoch that ended
    within the limit, not after the epoch that ran over (which `EarlyStopping` would
    otherwise restore if it was the best), and reports that epoch's time."""
    run = _sbibm_run()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.linspace(-1, 1, 64, dtype="float32")[:, None]
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(model.get_weights()))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=20,
                                         restore_best_weights=True)
    clock = iter(range(100))  # one second per reading: the start, then each epoch's end
    limit = run.time_limit(2.5, stop, clock=lambda: float(next(clock)))
    history = model.fit(x, 3 * x, validation_data=(x, 3 * x), epochs=10, verbose=0,
                        callbacks=[record, stop, limit])
    losses = history.history["val_loss"]
    assert len(losses) == 3 and losses[2] < losses[1]  # the overrun epoch was the best
    assert limit.kept_seconds == 2.0 and limit.kept_epochs == 2
    for kept, now in zip(seen[1], model.get_weights()):
        np.testing.assert_array_equal(kept, now)
    assert not np.allclose(seen[2][0], model.get_weights()[0])
    # a first epoch already past the limit: training stops there, with that epoch's weights
    clock = iter(range(100))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=20,
                                         restore_best_weights=True)
    limit = run.time_limit(0.5, stop, clock=lambda: float(next(clock)))
    seen.clear()
    history = model.fit(x, 3 * x, validation_data=(x, 3 * x), epochs=10, verbose=0,
                        callbacks=[record, stop, limit])
    assert len(history.history["loss"]) == 1 and limit.kept_seconds is None
    for kept, now in zip(seen[0], model.get_weights()):
        np.testing.assert_array_equal(kept, now)
