"""The flow steps: each adapts itself to data and maps it; the list holds the order of f."""

import numpy as np
import pytest

import tfp_nice as tn
from helpers import numpy_mlp
from tfp_nice.steps import (
    ActNormStep,
    CouplingStep,
    LULinearStep,
    PermutationStep,
    RescalingStep,
    build_steps,
)


def _batch(n=512, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) * np.array([0.1, 1, 3, 0.5, 2, 0.3]) + 4.0).astype("f8")


def test_actnorm_step_adapts_to_zero_mean_unit_variance():
    h = _batch()
    step = ActNormStep((6,), dtype="float64")
    out = step.adapt(h).numpy()
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(out.std(0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(step.bijector().forward(h), out)  # adapt returns the map


@pytest.mark.parametrize("target", [1.0, np.pi / np.sqrt(3)])
def test_rescaling_step_adapts_to_the_target_spread(target):
    h = _batch()
    step = RescalingStep((6,), init="data", target_std=target, dtype="float64")
    out = step.adapt(h).numpy()
    np.testing.assert_allclose(out.std(0), target, rtol=1e-6)
    np.testing.assert_allclose(out, h * np.exp(step.log_scale.numpy()), rtol=1e-12)


def test_rescaling_step_with_zeros_start_only_maps():
    h = _batch()
    step = RescalingStep((6,), init="zeros", dtype="float64")
    np.testing.assert_array_equal(step.adapt(h), h)
    np.testing.assert_array_equal(step.log_scale.numpy(), np.zeros(6))


def test_coupling_step_maps_like_nice_in_numpy():
    h = _batch()
    mask = np.array([True, False] * 3)
    step = CouplingStep((6,), mask, (8,), activation="tanh", dtype="float64")
    rng = np.random.default_rng(1)
    for w in step.network.weights:
        w.assign(rng.normal(scale=0.5, size=w.shape))
    expected = h.copy()
    expected[:, ~mask] += numpy_mlp(step.network, h[:, mask])
    np.testing.assert_allclose(step.adapt(h), expected, rtol=1e-12)


def test_permutation_step_reorders_the_entries():
    h = _batch()
    perm = np.array([3, 0, 5, 1, 4, 2])
    out = PermutationStep((6,), perm).adapt(h.astype("f4")).numpy()
    np.testing.assert_array_equal(out, h.astype("f4")[:, perm])


def test_lu_step_starts_as_a_rotation():
    h = _batch()
    out = LULinearStep((6,), seed=3, dtype="float64").adapt(h).numpy()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(h, axis=1),
                               rtol=1e-10)
    assert not np.allclose(out, h)


@pytest.mark.parametrize("kwargs,kinds", [
    ({}, ["coupling_0", "coupling_1", "coupling_2", "rescaling"]),
    ({"rescaling": False}, ["coupling_0", "coupling_1", "coupling_2"]),
    ({"actnorm": True, "permutation": "lu"},
     ["actnorm_0", "lu_linear_0", "coupling_0", "actnorm_1", "lu_linear_1", "coupling_1",
      "actnorm_2", "lu_linear_2", "coupling_2", "rescaling"]),
    ({"permutation": "reverse"},
     ["permutation_0", "coupling_0", "permutation_1", "coupling_1", "permutation_2",
      "coupling_2", "rescaling"]),
])
def test_build_steps_order(kwargs, kinds):
    steps = build_steps((6,), 3, (4,), **kwargs)
    assert [s.name for s in steps] == kinds
    masks = [s.mask for s in steps if isinstance(s, CouplingStep)]
    first = np.array([True, False] * 3)
    for k, mask in enumerate(masks):
        np.testing.assert_array_equal(mask, first if k % 2 == 0 else ~first)


def test_summary_shows_every_step_with_its_parameters():
    model = tn.NICE((6,), num_couplings=2, hidden_units=(4,), actnorm=True,
                    permutation="random")
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    # (name, parameters): ActNorm 2 x 6; permutation 6 (non-trainable ints); coupling
    # 3*4+4 + 4*3+3 = 31; rescaling 6.
    for name, count in [("actnorm_0", 12), ("permutation_0", 6), ("coupling_0", 31),
                        ("actnorm_1", 12), ("permutation_1", 6), ("coupling_1", 31),
                        ("rescaling", 6)]:
        row = next(line for line in text.splitlines() if name in line)
        assert row.replace("│", " ").split()[-1] == str(count), row


def _numpy_lu_matrix(step):
    """W = P L U from an LULinearStep's raw variables (lower and upper strictly, the
    diagonal sign * exp(log_diag) on U), as in Glow, section 3.2; y = W x."""
    size = step.num_dims
    lower = np.tril(step.lower.numpy(), -1) + np.eye(size)
    upper = np.triu(step.upper.numpy(), 1) + np.diag(step.sign.numpy()
                                                     * np.exp(step.log_diag.numpy()))
    rows = np.eye(size)[np.argsort(step.permutation.numpy())]  # TFP's lu_reconstruct
    return rows @ lower @ upper


def test_initialize_from_data_walks_the_steps_in_numpy():
    """Each ActNorm starts from what the LU maps and couplings before it made, and the
    rescaling from what the last coupling made: all computed here in numpy."""
    x = _batch()
    model = tn.NICE((6,), num_couplings=3, hidden_units=(4,), actnorm=True, permutation="lu",
                    activation="tanh", dtype="float64")
    rng = np.random.default_rng(2)
    for w in model.trainable_weights:  # LU factors and networks that move the data
        w.assign(rng.normal(scale=0.3, size=w.shape))
    model.initialize_from_data(x)
    first = np.array([True, False] * 3)
    h = x.copy()
    for k in range(3):
        actnorm, lu, coupling = model.steps[3 * k: 3 * k + 3]
        np.testing.assert_allclose(actnorm.shift.numpy(), -h.mean(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(actnorm.log_scale.numpy(), -np.log(h.std(0)), rtol=1e-6)
        h = (h + actnorm.shift.numpy()) * np.exp(actnorm.log_scale.numpy())  # as checked
        h = h @ _numpy_lu_matrix(lu).T
        mask = first if k % 2 == 0 else ~first
        h[:, ~mask] = h[:, ~mask] + numpy_mlp(coupling.network, h[:, mask])
    spread = np.pi / np.sqrt(3)  # the logistic prior's standard deviation
    np.testing.assert_allclose(model.log_scale.numpy(), np.log(spread / h.std(0)), rtol=1e-6)
    np.testing.assert_allclose(model.encode(x), h * spread / h.std(0), rtol=1e-6, atol=1e-9)
