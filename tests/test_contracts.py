"""What TFP and Keras promise their users, held against a NICE flow.

* TFP reads `is_constant_jacobian` as "the map is affine" and then computes
  `TransformedDistribution` moments by pushing the base's through the bijector:
  a coupling flow must raise instead, an affine one must give the closed form.
* TFP finds variables by `tf.Module` tracking (`trainable_variables`), which
  does not see Keras 3 variables unless the bijectors expose them.
* Keras mixed-precision policies: the coupling networks follow the policy, the
  flow stays float32.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn
from conftest import record_number
from helpers import half_precision_log_prob_tolerance, numpy_nice_log_prob, unit_roundoff
from tfp_nice.data import DIGITS_LEVELS, dequantize, load_digits

tfb = tfp.bijectors
tfd = tfp.distributions


def _logistic(d, dtype=tf.float32):
    return tfd.Independent(tfd.Logistic(tf.zeros(d, dtype), tf.ones(d, dtype)), 1)


@pytest.fixture(scope="module")
def digits():
    x = dequantize(load_digits()[0], DIGITS_LEVELS, seed=0).astype("float32")
    return x[:1400], x[1400:]


def _trained_digits_model(train, epochs=3, **kwargs):
    keras.utils.set_random_seed(0)
    model = tn.NICE((64,), hidden_units=(64, 64), num_levels=DIGITS_LEVELS, **kwargs)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(train, epochs=epochs, batch_size=64, verbose=0)
    return model


# --- moments: TFP's NotImplementedError for coupling flows, closed forms for affine ones --


MOMENTS = ("mean", "mode", "stddev", "covariance")


@pytest.mark.parametrize("moment", MOMENTS)
def test_moments_of_a_trained_nice_model_raise_like_tfp_real_nvp(digits, moment):
    train, _ = digits
    model = _trained_digits_model(train, epochs=1)
    real_nvp = tfd.TransformedDistribution(
        _logistic(64), tfb.RealNVP(num_masked=32, shift_and_log_scale_fn=lambda x, n: (x, None)))
    with pytest.raises(NotImplementedError):
        getattr(real_nvp, moment)()
    with pytest.raises(NotImplementedError):
        getattr(model.distribution, moment)()


@pytest.mark.parametrize("moment", MOMENTS)
def test_moments_of_hand_built_coupling_flows_raise(moment):
    d = 4
    mask = np.array([True, False, True, False])
    coupling = tn.AdditiveCoupling(lambda x_a: x_a ** 2, mask)
    affine = tn.AffineCoupling(lambda x_a: (x_a, tf.tanh(x_a)), mask)
    nets = [tn.CouplingMLP((8,), 2) for _ in range(2)]
    chain = tn.nice_bijector((d,), nets, log_scale=tf.zeros(d))
    for bijector in (coupling, tfb.Invert(coupling), affine, chain):
        with pytest.raises(NotImplementedError):
            getattr(tfd.TransformedDistribution(_logistic(d), bijector), moment)()


def test_the_coupling_mean_was_the_wrong_number():
    """With the old flag, mean() read g(0); the sample mean of y = x + x_a^2 is not that."""
    mask = np.array([True, False])
    coupling = tn.AdditiveCoupling(lambda x_a: x_a ** 2, mask)  # y_1 = x_1 + x_0^2
    base = tfd.Independent(tfd.Normal(tf.zeros(2), 1.0), 1)
    samples = tfd.TransformedDistribution(base, coupling).sample(200_000, seed=1)
    # E[y_1] = E[x_1] + E[x_0^2] = 1, while pushing the mean (0, 0) through gives 0.
    np.testing.assert_allclose(tf.reduce_mean(samples, 0), [0.0, 1.0], atol=0.02)
    assert float(coupling.forward(tf.zeros((1, 2)))[0, 1]) == 0.0


def test_affine_flows_keep_their_closed_form_moments():
    """Rescaling, ActNorm and permutations are affine: TFP's moments hold, by hand."""
    loc = np.array([1.0, -2.0, 0.5], "float32")
    sigma = np.array([0.5, 2.0, 1.0], "float32")
    s = np.array([0.3, -0.7, 1.1], "float32")
    b = np.array([0.2, 0.1, -0.4], "float32")
    base = tfd.MultivariateNormalDiag(loc, sigma)
    perm = np.array([2, 0, 1])
    # forward: y = P((x + b) * exp(s)) * exp(s)  (ActNorm, then Permutation, then Rescaling)
    bij = tfb.Chain([tn.Rescaling(keras.Variable(s)), tn.Permutation(perm, (3,)),
                     tn.ActNorm(keras.Variable(s), keras.Variable(b))])
    dist = tfd.TransformedDistribution(base, bij)
    assert bij.is_constant_jacobian
    mean = ((loc + b) * np.exp(s))[perm] * np.exp(s)
    std = (sigma * np.exp(s))[perm] * np.exp(s)
    np.testing.assert_allclose(dist.mean(), mean, rtol=1e-5)
    np.testing.assert_allclose(dist.mode(), mean, rtol=1e-5)
    np.testing.assert_allclose(dist.covariance(), np.diag(std ** 2), rtol=1e-5, atol=1e-6)


# --- variables TFP can see ------------------------------------------------------------------


def _ids(variables):
    return sorted(id(v) for v in variables)


def _backing(keras_variables):
    return [v.value for v in keras_variables]


@pytest.mark.parametrize("kwargs", [
    {},
    {"coupling": "affine", "permutation": "lu", "actnorm": True},
    {"permutation": "random", "partition": "halves"},
], ids=["nice", "affine-lu-actnorm", "random-permutation"])
def test_distribution_tracks_every_weight_of_the_model(kwargs):
    model = tn.NICE((6,), hidden_units=(8, 8), **kwargs)
    dist = model.distribution
    assert model.trainable_variables
    assert _ids(dist.trainable_variables) == _ids(_backing(model.trainable_variables))
    assert all(isinstance(v, tf.Variable) for v in dist.variables)
    # .variables adds the non-trainable ones the bijectors read (permutations, signs).
    flow_weights = [w for w in model.weights if w.path.split("/")[-1] != "data_initialized"]
    assert _ids(dist.variables) == _ids(_backing(flow_weights))


def test_hand_built_flow_over_unbuilt_networks_tracks_its_variables():
    d = 6
    masks = tn.coupling_masks((d,), 4, "odd_even")
    nets = [tn.CouplingMLP((16, 16), output_units=int((~m).sum())) for m in masks]
    log_scale = keras.Variable(np.zeros(d, "float32"), name="log_scale")
    g = tn.nice_bijector((d,), nets, partition="odd_even", log_scale=log_scale)
    flow = tfd.TransformedDistribution(_logistic(d), g)
    expected = [w for net in nets for w in net.trainable_weights] + [log_scale]
    assert len(expected) == 4 * 6 + 1
    assert _ids(flow.trainable_variables) == _ids(_backing(expected))
    assert _ids(g.trainable_variables) == _ids(_backing(expected))
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(tf.random.normal((8, d), seed=1)))
    grads = tape.gradient(loss, flow.trainable_variables)
    assert all(g is not None for g in grads)


def test_plain_gradient_tape_loop_over_distribution_variables_trains_the_model(digits):
    """TFP's custom-loop idiom: gradients for dist.trainable_variables, a Keras optimizer."""
    train, test = digits
    keras.utils.set_random_seed(0)
    model = tn.NICE((64,), hidden_units=(64, 64), num_levels=DIGITS_LEVELS)
    model.initialize_from_data(train[:256])
    before = -float(np.mean(model.log_prob(test)))
    variables = model.distribution.trainable_variables
    assert _ids(variables) == _ids(_backing(model.trainable_variables))
    optimizer = keras.optimizers.Adam(1e-3)
    data = tf.data.Dataset.from_tensor_slices(train).shuffle(1400, seed=0).batch(64)

    @tf.function
    def step(x):
        dist = model.distribution
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, dist.trainable_variables),
                                      dist.trainable_variables))
        return loss

    for _ in range(2):
        for x in data:
            step(x)
    after = -float(np.mean(model.log_prob(test)))
    record_number("digits held-out NLL, 2 epochs of a GradientTape loop, before (nats)", before)
    record_number("digits held-out NLL, 2 epochs of a GradientTape loop, after (nats)", after)
    assert after < before - 20.0


# --- mixed precision --------------------------------------------------------------------


@pytest.fixture(params=["mixed_bfloat16", "mixed_float16"])
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_networks_follow_the_policy_and_the_flow_stays_float32(policy):
    compute = policy.replace("mixed_", "")
    model = tn.NICE((6,), hidden_units=(8,), coupling="affine", actnorm=True,
                    permutation="lu")
    assert model.dtype_policy.name == policy and model.flow_dtype == "float32"
    assert all(w.dtype == "float32" for w in model.weights if w.dtype != "int32")
    net = model.coupling_networks[0]
    assert net.compute_dtype == compute
    seen = set()

    def recording(call):
        def wrapped(x):
            out = call(x)
            seen.add(out.dtype)
            return out
        return wrapped

    for layer in net.hidden_layers:  # record the dtype each Dense computes in
        layer.call = recording(layer.call)
    x = np.random.default_rng(0).random((5, 6)).astype("float32")
    log_p = model.log_prob(x)
    assert seen == {tf.as_dtype(compute)}
    shift, log_scale = net(x[:, :3])
    assert shift.dtype == tf.float32 and log_scale.dtype == tf.float32
    assert log_p.dtype == tf.float32
    assert model.encode(x).dtype == tf.float32 and model.sample(2).dtype == tf.float32
    assert model(x).dtype == tf.float32


def test_mixed_precision_coupling_inverts_exactly(policy):
    """Both directions compute m on the same bits of x_A: float32 round-off only."""
    mask = np.array([True, False] * 4)
    net = tn.CouplingMLP((32, 32), 4, dtype=policy)
    net.build((None, 4))
    rng = np.random.default_rng(1)
    for w in net.weights:
        w.assign(rng.normal(scale=0.5, size=w.shape))
    coupling = tn.AdditiveCoupling(net, mask)
    x = tf.constant(rng.random((256, 8)), tf.float32)
    back = coupling.inverse(tf.identity(coupling.forward(x)))
    np.testing.assert_allclose(back, x, rtol=0, atol=2e-6)


def test_mixed_precision_fit_round_trip_save_and_export(policy, digits, tmp_path):
    train, test = digits
    model = _trained_digits_model(train, epochs=4, coupling="additive")
    losses = model.history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0] - 20.0
    if policy == "mixed_float16":
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    z = model.encode(test)
    back = model.decode(tf.identity(z)).numpy()
    err = np.abs(back - test)
    # Each coupling alone inverts to float32 round-off (test above); through the whole
    # flow, the float32 round-off of one layer can move a network input across a
    # half-precision rounding boundary, so a few entries may differ by about an ulp of m
    # (at most 2u|m|) per coupling, carried through the others (a factor 4 allowed).
    u = unit_roundoff(policy.replace("mixed_", ""))
    largest_shifts = _largest_shifts(model, test)
    allowed = 4 * 2 * u * sum(largest_shifts)
    record_number(f"digits decode(encode(x)) max error, {policy}", err.max())
    record_number(f"digits decode(encode(x)) max error allowed, {policy}", allowed)
    record_number(f"digits decode(encode(x)) share of entries within 1e-6, {policy}",
                  np.mean(err < 1e-6))
    record_number(f"digits final training loss after 4 epochs, {policy}", losses[-1])
    assert np.mean(err < 1e-6) > 0.99 and err.max() < allowed

    model.save(tmp_path / "model.keras")
    keras.mixed_precision.set_global_policy("float32")  # the file carries the policy
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert reloaded.dtype_policy.name == policy
    assert reloaded.coupling_networks[0].compute_dtype == policy.replace("mixed_", "")
    np.testing.assert_array_equal(reloaded.log_prob(test[:16]), model.log_prob(test[:16]))

    tn.export_saved_model(model, tmp_path / "saved")
    served = tf.saved_model.load(str(tmp_path / "saved"))
    log_prob = served.signatures["log_prob"]
    assert log_prob.structured_input_signature[1]["x"].dtype == tf.float32
    out = log_prob(x=tf.constant(test[:16]))["log_prob"]
    assert out.dtype == tf.float32
    # The serving graph rounds differently from eager (fused kernels; other CPUs: native
    # float16 arithmetic): the tolerance is derived from the dtype and the model's sums.
    eager = model.log_prob(test[:16]).numpy()
    tolerance = half_precision_log_prob_tolerance(model, test[:16])
    record_number(f"digits served - eager log_prob, largest, {policy} (nats)",
                  np.abs(out - eager).max())
    record_number(f"digits served - eager log_prob, smallest tolerance, {policy} (nats)",
                  tolerance.min())
    np.testing.assert_array_less(np.abs(out - eager), tolerance)
    sample = served.signatures["sample"](num_samples=tf.constant(3), temperature=tf.constant(1.0),
                                         seed=tf.constant(0, tf.int64))["x"]
    assert sample.dtype == tf.float32 and sample.shape == (3, 64)


def _largest_shifts(model, x):
    """max |m_k| of each coupling network on the way from x to the latent, in numpy."""
    h, largest = tf.constant(x), []
    for step in model.steps:
        if hasattr(step, "network"):
            m = step.network(tf.boolean_mask(h, step.mask.reshape(-1), axis=1))
            largest.append(float(tf.reduce_max(tf.abs(m))))
        h = step.bijector().forward(h)
    return largest


def _without_a_coupling(monkeypatch):
    # At the step, so every path of the flow (its bijector, log_prob, the export) loses it.
    original = tn.CouplingStep.bijector
    monkeypatch.setattr(tn.CouplingStep, "bijector", lambda self, context=None: (
        tfb.Identity() if self.name == "coupling_1" else original(self, context)))


def _without_the_rescaling_log_det(monkeypatch):
    monkeypatch.setattr(tn.Rescaling, "_forward_log_det_jacobian",
                        lambda self, x: tf.zeros([], x.dtype))
    monkeypatch.setattr(tn.Rescaling, "_inverse_log_det_jacobian",
                        lambda self, y: tf.zeros([], y.dtype))


def test_the_half_precision_tolerance_admits_a_cpu_that_accumulates_in_half_precision(
        policy, digits):
    """A CPU with native half-precision arithmetic, emulated in numpy (every product and
    partial sum rounded to the dtype): its log_prob is within the tolerance of eager's."""
    import ml_dtypes

    train, test = digits
    model = _trained_digits_model(train, epochs=4, coupling="additive")
    half = {"mixed_float16": np.float16, "mixed_bfloat16": ml_dtypes.bfloat16}[policy]
    first = np.arange(64) % 2 == 0  # odd_even: entries 0, 2, ... condition first
    emulated = numpy_nice_log_prob(test[:16], [first, ~first] * 2, model.coupling_networks,
                                   model.log_scale.numpy(), half=half)
    eager = model.log_prob(test[:16]).numpy()
    tolerance = half_precision_log_prob_tolerance(model, test[:16])
    record_number(f"half-precision CPU emulated in numpy - eager, largest share of the "
                  f"tolerance, {policy}", np.max(np.abs(emulated - eager) / tolerance))
    np.testing.assert_array_less(np.abs(emulated - eager), tolerance)


@pytest.mark.parametrize("mutation", [_without_a_coupling, _without_the_rescaling_log_det],
                         ids=["coupling-dropped", "rescaling-log-det-dropped"])
def test_the_half_precision_tolerance_fails_a_served_graph_that_computes_otherwise(
        policy, digits, tmp_path, monkeypatch, mutation):
    """The tolerance above is loose enough for any CPU's rounding and tight enough to see
    a served graph that leaves out a coupling or the rescaling's log-det."""
    train, test = digits
    model = _trained_digits_model(train, epochs=4, coupling="additive")
    eager = model.log_prob(test[:16]).numpy()
    with monkeypatch.context() as patch:
        mutation(patch)
        tn.export_saved_model(model, tmp_path / "wrong")
    served = tf.saved_model.load(str(tmp_path / "wrong")).signatures["log_prob"]
    out = served(x=tf.constant(test[:16]))["log_prob"].numpy()
    tolerance = half_precision_log_prob_tolerance(model, test[:16])
    record_number(f"wrong served graph ({mutation.__name__}): smallest error / tolerance, "
                  f"{policy}", np.min(np.abs(out - eager) / tolerance))
    assert np.all(np.abs(out - eager) > tolerance)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mixed_precision_still_refuses_half_precision_data(policy, dtype):
    model = tn.NICE((6,), hidden_units=(8,))
    model.compile(keras.optimizers.Adam(1e-3))
    x = tf.cast(tf.random.uniform((64, 6)), dtype)
    with pytest.raises(TypeError, match=f"does not take {dtype} x.*loses the dequantization"
                                        f".*pass float32.*{policy}"):
        model.log_prob(x)
    with pytest.raises(TypeError, match="half precision"):
        model.fit(x.numpy(), epochs=1, batch_size=32, verbose=0)
    with pytest.raises(TypeError, match=f"does not take {dtype} x"):
        model(x)


def test_distribution_variables_under_a_mirrored_strategy(mirrored_strategy):
    with mirrored_strategy.scope():
        model = tn.NICE((6,), hidden_units=(8,))
    variables = model.distribution.trainable_variables
    assert len(variables) == len(model.trainable_variables) == 4 * 4 + 1
    assert _ids(variables) == _ids(_backing(model.trainable_variables))
    assert all(isinstance(v, tf.distribute.DistributedValues) for v in variables)


def test_tfp_math_minimize_trains_the_model_through_its_distribution():
    x = tf.constant(np.random.default_rng(0).normal(size=(256, 6)).astype("float32") * 0.5 + 1)
    model = tn.NICE((6,), hidden_units=(16,))
    before = [w.numpy().copy() for w in model.trainable_weights]

    def loss():
        return -tf.reduce_mean(model.distribution.log_prob(x))

    trace = tfp.math.minimize(loss, num_steps=100, optimizer=keras.optimizers.Adam(1e-2),
                              trainable_variables=model.distribution.trainable_variables)
    assert float(trace[-1]) < float(trace[0]) - 2.0
    assert float(loss()) < float(trace[0]) - 2.0
    for w, b in zip(model.trainable_weights, before):
        assert not np.array_equal(w.numpy(), b), f"{w.path} did not change"


def test_entropy_of_an_additive_flow_is_exact():
    """Constant log-det: H = H[prior] + log|det g'|; checked against Monte Carlo and,
    for a flow that is its rescaling alone, the logistic's closed form."""
    model = tn.NICE((6,), hidden_units=(16,), actnorm=True, permutation="lu", dtype="float64")
    rng = np.random.default_rng(0)
    for w in model.trainable_weights:
        w.assign(rng.normal(scale=0.3, size=w.shape))
    samples = model.sample(200_000, seed=3)
    monte_carlo = -float(tf.reduce_mean(model.log_prob(samples)))
    assert float(model.entropy()) == pytest.approx(monte_carlo, abs=0.02)
    with pytest.raises(NotImplementedError):
        model.distribution.entropy()

    fresh = tn.NICE((3,), hidden_units=(4,))  # identity couplings
    fresh.log_scale.assign([0.5, -1.0, 2.0])
    # A standard logistic has entropy 2 per entry; g = f^{-1} scales by exp(-s).
    assert float(fresh.entropy()) == pytest.approx(3 * 2.0 - (0.5 - 1.0 + 2.0), abs=1e-5)
    with pytest.raises(NotImplementedError, match="constant log-determinant.*coupling_0"):
        tn.NICE((4,), hidden_units=(4,), coupling="affine").entropy()


def test_entropy_refuses_the_logit_step_whose_log_det_depends_on_x():
    """With logit_alpha, H[prior] + log|det g'(0)| is not the entropy: Monte Carlo says so."""
    model = tn.NICE((4,), hidden_units=(8,), logit_alpha=0.05, dtype="float64")
    rng = np.random.default_rng(1)
    for w in model.trainable_weights:
        w.assign(rng.normal(scale=0.3, size=w.shape))
    samples = model.sample(100_000, seed=4)
    monte_carlo = -float(tf.reduce_mean(model.log_prob(samples)))
    z = tf.zeros((1, 4), tf.float64)
    constant_formula = float(model.base_distribution.entropy()
                             + model.bijector.forward_log_det_jacobian(z, event_ndims=1)[0])
    record_number("logit NICE entropy, Monte Carlo vs the constant-log-det formula (nats)",
                  constant_formula - monte_carlo)
    assert abs(constant_formula - monte_carlo) > 1.0  # what entropy() used to return
    with pytest.raises(NotImplementedError, match="logit"):
        model.entropy()
