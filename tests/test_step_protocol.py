"""One protocol for every step: `bijector(context=None)` and `adapt(h, context=None)`.

A step of the user's written against that signature works in unconditional and
conditional flows alike; a conditional one binds the context, an unconditional one
ignores it. References: the closed-form normal density of a shifted and scaled input.
"""

import math
import warnings

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn

tfb = tfp.bijectors


def normal_log_pdf(z):
    return (-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)).sum(1)


class DoubleStep(tn.FlowStep):
    """A user's unconditional step: h = 2 x (data -> latent)."""

    def bijector(self, context=None):
        return tfb.Scale(tf.constant(2.0, self.variable_dtype), name=self.name)


class ShiftByContextStep(tn.FlowStep):
    """A user's conditional step: h = x + c, one context row per example."""

    @property
    def context_shape(self):
        return self.event_shape

    def bijector(self, context=None):
        if context is None:
            raise ValueError(f"{self.name} needs a context.")
        return tfb.Shift(tf.convert_to_tensor(context), name=self.name)


X = np.array([[0.5, -1.0], [2.0, 0.3], [-0.7, 0.1]], "float32")
C = np.array([[1.0, 0.0], [-2.0, 0.5], [0.3, 0.3]], "float32")


def test_a_users_step_works_in_an_unconditional_flow():
    model = tn.Flow([DoubleStep((2,), name="double")])
    expected = normal_log_pdf(2.0 * X) + 2 * math.log(2.0)
    np.testing.assert_allclose(model.log_prob(X), expected, rtol=1e-6)


def test_the_same_step_works_in_a_conditional_flow_beside_a_conditional_one():
    model = tn.Flow([DoubleStep((2,), name="double"), ShiftByContextStep((2,), name="shift")],
                    context_shape=(2,))
    expected = normal_log_pdf(2.0 * X + C) + 2 * math.log(2.0)
    np.testing.assert_allclose(model.log_prob(X, context=C), expected, rtol=1e-6)
    # the data start walks the same steps with the same context
    np.testing.assert_allclose(model.encode(X, context=C), 2.0 * X + C, rtol=1e-6)
    model.initialize_from_data(X, C)
    # every built-in step takes the context and ignores it when unconditional
    for step in [tn.ActNormStep((2,)), tn.RescalingStep((2,)), tn.PermutationStep(
            (2,), [1, 0]), tn.LULinearStep((2,)), tn.LogitStep((2,), alpha=0.05),
            tn.CouplingStep((2,), [True, False], hidden_units=(4,))]:
        probe = np.array([[0.2, 0.7], [0.6, 0.4]], "float32")
        np.testing.assert_array_equal(step.bijector(context=C[:2]).forward(probe),
                                      step.bijector().forward(probe))
        np.testing.assert_array_equal(step.adapt(probe, context=C[:2]).shape, probe.shape)


def test_a_conditional_built_in_step_still_needs_its_context():
    step = tn.CouplingStep((2,), [True, False], hidden_units=(4,), context_shape=(2,),
                           name="conditional")
    with pytest.raises(ValueError, match="conditional .* needs a context"):
        step.bijector()


def test_a_step_written_without_the_context_is_wrapped_with_a_warning():
    with pytest.warns(DeprecationWarning, match="OldStep.bijector takes no context="):
        class OldStep(tn.FlowStep):
            def bijector(self):
                return tfb.Scale(tf.constant(2.0), name=self.name)
    model = tn.Flow([OldStep((2,), name="old"), ShiftByContextStep((2,), name="shift")],
                    context_shape=(2,))
    expected = normal_log_pdf(2.0 * X + C) + 2 * math.log(2.0)
    np.testing.assert_allclose(model.log_prob(X, context=C), expected, rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        class NewStep(tn.FlowStep):  # written against the protocol: no warning
            def bijector(self, context=None):
                return tfb.Identity()
    assert NewStep((2,)).bijector(context=C).forward(X).shape == X.shape
