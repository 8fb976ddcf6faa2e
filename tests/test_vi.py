"""tn.vi: flow surrogate posteriors of TFP models, against change of variables by hand,
closed-form posteriors, TFP's own training loop, and the bounds' known order."""

import json
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn

tfd, tfb = tfp.distributions, tfp.bijectors


def _eight_schools_like(dtype="float32"):
    """A hierarchical model with a positive part and a vector part, pinned to data."""
    f = np.dtype(dtype).type
    model = tfd.JointDistributionNamed(dict(
        mu=tfd.Normal(f(0.0), f(5.0)),
        tau=tfd.HalfNormal(f(3.0)),
        theta=lambda mu, tau: tfd.Sample(tfd.Normal(mu, tau), 3),
        y=lambda theta: tfd.Independent(tfd.Normal(theta, f(2.0)), 1)))
    return model.experimental_pin(y=np.array([4.0, -1.0, 2.5], dtype))


def _scramble(model, seed, scale=0.3):
    """Random weights everywhere, so that no step is the identity."""
    rng = np.random.default_rng(seed)
    for v in model.trainable_variables:
        v.assign(scale * rng.normal(size=v.shape).astype(v.dtype))


def test_the_surrogates_density_is_the_change_of_variables_of_its_draws_by_hand():
    """log q(parts) == log N(z) - log|det dG/dz|, with G = the target's own event-space
    bijector after the flow, its Jacobian by autodiff, in float64."""
    target = _eight_schools_like("float64")
    model = tn.vi.surrogate_flow(target, num_steps=2, hidden_units=(8, 8), seed=3)
    _scramble(model, 0)
    own = target.experimental_default_event_space_bijector()  # TFP's, not ours
    keys = sorted(target.event_shape)  # tf.nest order: mu, tau, theta
    assert keys == ["mu", "tau", "theta"]
    rng = np.random.default_rng(1)
    for _ in range(3):
        z = tf.constant(rng.normal(size=(1, 5)))
        with tf.GradientTape() as tape:
            tape.watch(z)
            # the flow's unconstrained rows (mu, tau, theta x 3): its draw taken back
            # through its support step
            u = model.steps[0].bijector().forward(model.decode(z))
            # the support by hand: TFP's bijector on the split rows
            unconstrained = {"mu": u[:, 0], "tau": u[:, 1], "theta": u[:, 2:]}
            parts = own.forward(unconstrained)
            flat = tf.concat([parts["mu"][:, None], parts["tau"][:, None], parts["theta"]],
                             axis=1)
        jac = tape.batch_jacobian(flat, z)[0].numpy()
        expected = (tfd.Normal(np.float64(0), np.float64(1)).log_prob(z).numpy().sum()
                    - np.linalg.slogdet(jac)[1])
        got = model.surrogate.log_prob({k: parts[k] for k in keys}).numpy()[0]
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
        assert parts["tau"].numpy()[0] > 0


def test_samples_speak_the_targets_structure_and_lie_on_its_support():
    target = _eight_schools_like()
    model = tn.vi.surrogate_flow(target, num_steps=2, hidden_units=(8,), initial_scale=3.0)
    _scramble(model, 1)
    draws = model.sample_parts(500, seed=2)
    assert sorted(draws) == ["mu", "tau", "theta"]
    assert draws["mu"].shape == (500,) and draws["theta"].shape == (500, 3)
    assert np.all(draws["tau"].numpy() > 0)
    q = model.surrogate.sample(7, seed=(1, 2))
    assert q["theta"].shape == (7, 3) and np.all(q["tau"].numpy() > 0)
    rows = model.flatten(draws)
    np.testing.assert_allclose(model.log_prob(rows), model.surrogate.log_prob(draws),
                               rtol=1e-5, atol=1e-5)
    assert model.part_names == ["mu", "tau", "theta"]


def test_the_tfp_route_trains_the_models_variables():
    target = _eight_schools_like()
    model = tn.vi.surrogate_flow(target, num_steps=2, hidden_units=(8,))
    q = model.surrogate
    ours = {id(v) for v in model.trainable_variables}
    theirs = {id(v) for v in q.trainable_variables}
    assert len(theirs) == len(ours) > 0
    before = [v.numpy().copy() for v in model.trainable_variables]
    losses = tfp.vi.fit_surrogate_posterior(target.unnormalized_log_prob, q,
                                            keras.optimizers.Adam(1e-2), num_steps=5,
                                            sample_size=8, seed=(0, 1))
    assert np.isfinite(losses.numpy()).all()
    assert all(not np.array_equal(b, v.numpy())
               for b, v in zip(before, model.trainable_variables))


def _conjugate():
    """loc ~ N(0, 3), y1 ~ N(loc, 1); rate ~ Gamma(2, 1), y2 ~ Poisson(rate): independent
    closed-form posteriors, a Normal and a Gamma."""
    y1 = np.array([1.2, 0.4, 2.0, 1.1, 0.7, 1.6, 0.9, 1.3], "float32")
    y2 = np.array([3.0, 5.0, 2.0, 4.0, 6.0, 3.0], "float32")
    model = tfd.JointDistributionNamed(dict(
        loc=tfd.Normal(0.0, 3.0), rate=tfd.Gamma(2.0, 1.0),
        y1=lambda loc: tfd.Sample(tfd.Normal(loc, 1.0), len(y1)),
        y2=lambda rate: tfd.Sample(tfd.Poisson(rate), len(y2))))
    precision = 1 / 9 + len(y1)
    exact = {"loc": tfd.Normal(y1.sum() / precision, precision ** -0.5),
             "rate": tfd.Gamma(2.0 + y2.sum(), 1.0 + len(y2))}
    return model.experimental_pin(y1=y1, y2=y2), exact


def _kl_to_exact(model, exact, n=20000, seed=5):
    draws = model.sample_parts(n, seed=seed)
    log_q = model.surrogate.log_prob(draws).numpy().astype(np.float64)
    log_p = sum(exact[k].log_prob(draws[k]).numpy().astype(np.float64) for k in exact)
    diff = log_q - log_p
    return diff.mean(), diff.std() / np.sqrt(n)


def test_on_a_conjugate_model_the_trained_surrogate_is_the_closed_form_posterior():
    target, exact = _conjugate()
    keras.utils.set_random_seed(0)
    model = tn.vi.surrogate_flow(target, num_steps=2, hidden_units=(16, 16), sample_size=64,
                                 stick_the_landing=True)
    start, _ = _kl_to_exact(model, exact)
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(steps=1500, steps_per_epoch=250, verbose=0)
    assert len(history.history["elbo"]) == 6
    kl, se = _kl_to_exact(model, exact)
    assert start > 1.0  # the standard start is far from the posterior
    assert kl < 0.01 + 3 * se, (kl, se)
    draws = model.sample_parts(20000, seed=7)
    for key in exact:  # and its moments are the posterior's
        np.testing.assert_allclose(draws[key].numpy().mean(), exact[key].mean(),
                                   rtol=0.02, atol=0.01)
        np.testing.assert_allclose(draws[key].numpy().std(), exact[key].stddev(), rtol=0.05)


def test_both_routes_reach_the_same_elbo():
    target, _ = _conjugate()
    results = []
    for route in ("keras", "tfp"):
        model = tn.vi.surrogate_flow(target, num_steps=2, hidden_units=(16,), sample_size=32,
                                     seed=0)
        if route == "keras":
            model.compile(keras.optimizers.Adam(1e-2))
            model.fit(steps=600, steps_per_epoch=600, verbose=0)
        else:
            tfp.vi.fit_surrogate_posterior(target.unnormalized_log_prob, model.surrogate,
                                           keras.optimizers.Adam(1e-2), num_steps=600,
                                           sample_size=32, seed=(3, 4))
        results.append(model.elbo(20000, seed=11))
    assert abs(results[0] - results[1]) < 0.02, results


def _standard_normal_target(loc, scale, log_z):
    """An unnormalized 2-D normal whose normaliser is exp(log_z)."""
    dist = tfd.MultivariateNormalDiag(loc, scale)

    class Target:
        event_shape = tf.TensorShape([2])
        dtype = tf.float32
        name = "normal"

        def experimental_default_event_space_bijector(self):
            return tfb.Identity()

        def unnormalized_log_prob(self, x):
            return dist.log_prob(x) + log_z

    return Target()


def test_the_bounds_sit_in_their_known_order_below_the_normaliser():
    """ELBO <= IW bound(K=5) <= IW bound(K=50) <= log Z, for a q that is not the target."""
    log_z = 1.7
    target = _standard_normal_target([1.0, -2.0], [0.5, 2.0], log_z)
    model = tn.vi.surrogate_flow(target, num_steps=1, hidden_units=(8,), initial_scale=1.0)
    elbo = model.elbo(40000, seed=1)
    iw5 = model.elbo(8000, importance_samples=5, seed=2)
    iw50 = model.elbo(2000, importance_samples=50, seed=3)
    assert elbo < iw5 - 0.1 and iw5 < iw50 - 0.05 and iw50 < log_z, (elbo, iw5, iw50)
    # the ELBO's gap is KL(q || p), here in closed form: q = N(0, I) at the start
    kl = tfd.kl_divergence(tfd.MultivariateNormalDiag([0.0, 0.0], [1.0, 1.0]),
                           tfd.MultivariateNormalDiag([1.0, -2.0], [0.5, 2.0])).numpy()
    np.testing.assert_allclose(elbo, log_z - kl, atol=0.05)


@pytest.mark.parametrize("flow", ["autoregressive", "coupling"])
def test_sticking_the_landing_zeroes_the_gradient_at_the_exact_posterior(flow):
    """With q equal to the target, log p - log q is constant: the STL gradient is exactly
    zero for every draw, while the plain reparameterised one is not (an IAF's held-weights
    density is its entry-by-entry direction, a coupling flow's its one-pass inverse)."""
    target = _standard_normal_target([1.0, -2.0], [0.5, 2.0], 0.0)
    grads = {}
    for stl in (False, True):
        model = tn.vi.surrogate_flow(target, flow=flow, num_steps=2, hidden_units=(8,),
                                     stick_the_landing=stl)
        loc_scale = model.steps[1]  # f: y = (x + b) exp(s); q = N(-b, exp(-s))
        loc_scale.shift.assign([-1.0, 2.0])
        loc_scale.log_scale.assign(-np.log([0.5, 2.0]).astype("float32"))
        with tf.GradientTape() as tape:
            log_w, _ = model._log_weights(64, seed=tf.constant([1, 2]))
            loss = -tf.reduce_mean(log_w)
        np.testing.assert_allclose(log_w, 0.0, atol=1e-5)
        grads[stl] = [g for g in tape.gradient(loss, model.trainable_variables)
                      if g is not None]
    assert max(float(tf.reduce_max(tf.abs(g))) for g in grads[True]) < 1e-5
    assert max(float(tf.reduce_max(tf.abs(g))) for g in grads[False]) > 1e-2


def _counting_target(bad_step, poison_gradients=False):
    """A 2-D normal whose log-density turns NaN on its `bad_step`-th call (and, with
    `poison_gradients`, its gradients too)."""
    calls = tf.Variable(0, dtype=tf.int64, trainable=False)
    dist = tfd.MultivariateNormalDiag([1.0, -1.0], [1.0, 1.0])

    class Target:
        event_shape = tf.TensorShape([2])
        dtype = tf.float32

        def experimental_default_event_space_bijector(self):
            return tfb.Identity()

        def unnormalized_log_prob(self, x):
            calls.assign_add(1)
            lp = dist.log_prob(x)
            bad = tf.where(tf.equal(calls, bad_step), np.nan, 0.0)
            if poison_gradients:
                return lp + bad * lp
            return tf.where(tf.equal(calls, bad_step), tf.fill(tf.shape(lp), np.nan), lp)

    return Target()


def test_all_finite_looks_at_the_loss_and_every_entry_of_every_gradient():
    grads = [tf.ones((3, 2)), None, tf.ones((4,))]
    assert bool(tn.vi.all_finite(tf.constant(1.5), grads))  # None gradients are skipped
    assert not bool(tn.vi.all_finite(tf.constant(np.nan), grads))
    assert not bool(tn.vi.all_finite(tf.constant([1.0, np.inf]), grads))
    for k, bad in ((0, np.nan), (2, np.inf), (2, -np.inf)):
        # one bad entry, last in its tensor, in the first or the last gradient
        g = [t if t is None else t.numpy().copy() for t in grads]
        g[k].flat[-1] = bad
        assert not bool(tn.vi.all_finite(tf.constant(0.0), [None if t is None
                                                           else tf.constant(t) for t in g]))


def test_a_nonfinite_step_stops_training_naming_it_and_keeps_the_last_finite_weights():
    keras.utils.set_random_seed(0)
    model = tn.vi.surrogate_flow(_counting_target(7), num_steps=1, hidden_units=(8,), seed=0)
    model.compile(keras.optimizers.Adam(1e-2))
    with pytest.warns(RuntimeWarning, match=r"at step 7; .*weights of step 6"):
        history = model.fit(steps=20, steps_per_epoch=5, verbose=0)
    assert len(history.history["loss"]) == 2  # stopped after the epoch holding step 7
    assert int(model.halted_at.numpy()) == 7
    keras.utils.set_random_seed(0)  # the same start and the same draws
    reference = tn.vi.surrogate_flow(_counting_target(10**9), num_steps=1, hidden_units=(8,),
                                     seed=0)
    reference.compile(keras.optimizers.Adam(1e-2))
    reference.fit(steps=6, steps_per_epoch=6, verbose=0)
    for ours, theirs in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
        assert np.isfinite(ours.numpy()).all()


def test_on_the_tfp_route_a_nonfinite_step_stops_the_loop_and_the_last_finite_weights_return(
        capfd):
    """`tfp.vi.fit_surrogate_posterior` calls the target once a step: its 7th call is step
    6 (TFP counts from 0). The guard stops there, with the weights a 6-step run reaches."""

    def run(bad_call, num_steps, criterion=True):
        keras.utils.set_random_seed(0)
        target = _counting_target(bad_call, poison_gradients=True)
        q = tn.vi.surrogate_posterior(target, num_steps=1, hidden_units=(8,), seed=0)
        stop = tn.vi.StopOnNonFinite(q.trainable_variables) if criterion else None
        losses = tfp.vi.fit_surrogate_posterior(
            target.unnormalized_log_prob, q, keras.optimizers.Adam(1e-2), num_steps=num_steps,
            sample_size=8, seed=(3, 4), convergence_criterion=stop)
        return q, stop, losses.numpy()

    q, stop, losses = run(7, 20)
    assert int(stop.halted_at.numpy()) == 6
    # TFP's trace is full length: after the stop it repeats the last step's loss
    assert len(losses) == 20 and np.isnan(losses[6:]).all() and np.isfinite(losses[:6]).all()
    assert "NaN or inf at step 6" in capfd.readouterr().err
    reference, _, reference_losses = run(10**9, 6)
    np.testing.assert_array_equal(losses[:6], reference_losses)
    for ours, theirs in zip(q.trainable_variables, reference.trainable_variables):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    unguarded, _, _ = run(7, 20, criterion=False)  # what the guard prevents: NaN weights
    assert not all(np.isfinite(v.numpy()).all() for v in unguarded.trainable_variables)
    keras.utils.set_random_seed(0)  # a NaN loss with finite gradients stops it too
    target = _counting_target(7)
    q = tn.vi.surrogate_posterior(target, num_steps=1, hidden_units=(8,), seed=0)
    stop = tn.vi.StopOnNonFinite(q)
    losses = tfp.vi.fit_surrogate_posterior(
        target.unnormalized_log_prob, q, keras.optimizers.Adam(1e-2), num_steps=20,
        sample_size=8, seed=(3, 4), convergence_criterion=stop).numpy()
    assert int(stop.halted_at.numpy()) == 6 and np.isnan(losses[6:]).all()
    q, stop, losses = run(1, 20)  # TFP's first step, before its loop
    assert int(stop.halted_at.numpy()) == 0 and np.isnan(losses[0])
    keras.utils.set_random_seed(0)
    start = tn.vi.surrogate_posterior(_counting_target(1), num_steps=1, hidden_units=(8,),
                                      seed=0)
    for ours, theirs in zip(q.trainable_variables, start.trainable_variables):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())  # as built
    with pytest.raises(ValueError, match="needs the variables to guard"):
        tn.vi.StopOnNonFinite([])


def test_fit_under_a_mirrored_strategy_trains_and_halts_on_every_replica(mirrored_strategy):
    """Two replicas share each step's draws (each its own), their gradients summed: the
    surrogate of a normal target reaches it; a non-finite step on either replica halts
    both, with the weights of the step before."""
    target = _standard_normal_target([1.0, -2.0], [0.5, 2.0], 0.0)
    with mirrored_strategy.scope():
        model = tn.vi.surrogate_flow(target, flow="coupling", num_steps=2, hidden_units=(8,),
                                     sample_size=32, stick_the_landing=True)
        model.compile(keras.optimizers.Adam(2e-2))
    model.fit(steps=600, steps_per_epoch=100, verbose=0)
    draws = model.sample(20000, seed=1).numpy()
    np.testing.assert_allclose(draws.mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(draws.std(0), [0.5, 2.0], rtol=0.03)

    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    dist = tfd.MultivariateNormalDiag([1.0, -1.0], [1.0, 1.0])

    class Target:  # NaN (gradients too) on the second replica only, at step `bad`
        event_shape = tf.TensorShape([2])
        dtype = tf.float32
        bad = 7

        def experimental_default_event_space_bijector(self):
            return tfb.Identity()

        def unnormalized_log_prob(self, x):
            lp = dist.log_prob(x)
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            poison = tf.logical_and(tf.equal(step, self.bad), tf.equal(replica, 1))
            return lp + tf.where(poison, np.nan, 0.0) * lp

    class Count(keras.callbacks.Callback):  # the step number, set between steps
        def on_train_batch_begin(self, batch, logs=None):
            step.assign_add(1)

    def run(bad, steps, steps_per_epoch=5):
        keras.utils.set_random_seed(0)
        step.assign(0)
        target = Target()
        target.bad = bad
        with mirrored_strategy.scope():
            model = tn.vi.surrogate_flow(target, num_steps=1, hidden_units=(8,), seed=0)
            model.compile(keras.optimizers.Adam(1e-2))
        return model, model.fit(steps=steps, steps_per_epoch=steps_per_epoch, verbose=0,
                                callbacks=[Count()])

    with pytest.warns(RuntimeWarning, match=r"at step 7; .*weights of step 6"):
        model, _ = run(7, 20)
    assert int(model.halted_at.numpy()) == 7
    reference, _ = run(-1, 6, steps_per_epoch=6)  # stopped after 6 steps
    for ours, theirs in zip(model.trainable_variables, reference.trainable_variables):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
        assert np.isfinite(ours.numpy()).all()


def test_keras_round_trip_keeps_the_surrogate_and_asks_for_the_target_to_train(tmp_path):
    target = _eight_schools_like()
    model = tn.vi.surrogate_flow(target, num_steps=2, hidden_units=(8,))
    _scramble(model, 2)
    draws = model.sample_parts(5, seed=1)
    model.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    assert isinstance(loaded, tn.vi.VariationalFlow) and loaded.target is None
    np.testing.assert_allclose(loaded.surrogate.log_prob(draws), model.surrogate.log_prob(draws),
                               rtol=1e-6)
    loaded.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="no target"):
        loaded.fit(steps=1, verbose=0)
    loaded.target = target
    loaded.fit(steps=2, verbose=0)


SERVE = """
import json, sys
import numpy as np, tensorflow as tf
served = tf.saved_model.load(sys.argv[1])
out = served.signatures["sample_parts"](num_samples=tf.constant(6), temperature=tf.constant(1.0),
                                        seed=tf.constant(3, tf.int64))
print(json.dumps({k: v.numpy().tolist() for k, v in out.items()} |
                 {"modules": sorted(m for m in sys.modules if m.startswith(("tfp_nice",
                                                                          "tensorflow_probability")))}))
"""


def test_the_exported_surrogate_serves_draws_in_the_targets_parts(tmp_path):
    target = _eight_schools_like()
    model = tn.vi.surrogate_flow(target, num_steps=2, hidden_units=(8,))
    _scramble(model, 3)
    model.export(str(tmp_path / "served"))
    (tmp_path / "serve.py").write_text(SERVE)
    done = subprocess.run([sys.executable, str(tmp_path / "serve.py"), str(tmp_path / "served")],
                          capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    assert served.pop("modules") == []
    assert sorted(served) == ["mu", "tau", "theta"]
    parts = {k: np.array(v, "float32") for k, v in served.items()}
    assert parts["theta"].shape == (6, 3) and np.all(parts["tau"] > 0)
    assert np.isfinite(model.surrogate.log_prob(parts).numpy()).all()


def test_an_inference_gym_model_is_a_target():
    gym = pytest.importorskip("inference_gym.using_tensorflow")
    target = gym.targets.EightSchools()
    model = tn.vi.surrogate_flow(target, num_steps=1, hidden_units=(16,))
    assert model.part_names == sorted(target.event_shape)
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(steps=3, verbose=0)
    assert np.isfinite(history.history["elbo"]).all()


def test_bad_input_gets_a_clear_error():
    target = _eight_schools_like()
    with pytest.raises(ValueError, match="flow must be one of"):
        tn.vi.surrogate_flow(target, flow="maf")
    with pytest.raises(ValueError, match="stick_the_landing"):
        tn.vi.surrogate_flow(target, stick_the_landing=True, importance_samples=4)
    with pytest.raises(ValueError, match="initial_scale"):
        tn.vi.surrogate_flow(target, initial_scale=0.0)

    class NoSupport:
        event_shape = tf.TensorShape([2])
        dtype = tf.float32
        name = "nosupport"

        def log_prob(self, x):
            return tf.reduce_sum(x, -1)

    with pytest.raises(ValueError, match="no default event-space bijector"):
        tn.vi.surrogate_flow(NoSupport())
    mixed = tfd.JointDistributionNamed(dict(a=tfd.Normal(0.0, 1.0),
                                            b=tfd.Normal(np.float64(0), np.float64(1))))
    with pytest.raises(ValueError, match="mixes dtypes"):
        tn.vi.surrogate_flow(mixed)
    model = tn.vi.surrogate_flow(target, num_steps=1, hidden_units=(8,))
    with pytest.raises(ValueError, match="compile"):
        model.fit(steps=1)
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="takes no x"):
        model.fit(x=np.zeros((4, 5)))
    steps = [tn.sbi.SupportStep(tfb.Identity(), [(2,)]), tn.ActNormStep((2,))]
    with pytest.raises(ValueError, match="data-dependent start"):
        tn.vi.VariationalFlow(steps)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tn.vi.VariationalFlow([tn.sbi.SupportStep(tfb.Identity(), [(2,)]),
                               tn.ActNormStep((2,), init="identity")])
