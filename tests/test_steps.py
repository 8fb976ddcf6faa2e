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


def test_initialize_from_data_is_the_loop_of_adapt():
    x = _batch().astype("float32")
    a = tn.NICE((6,), hidden_units=(4,), actnorm=True, permutation="lu")
    b = tn.NICE((6,), hidden_units=(4,), actnorm=True, permutation="lu")
    rng = np.random.default_rng(2)
    for wa, wb in zip(a.weights, b.weights):
        if wa.dtype != "int32":
            v = rng.normal(scale=0.3, size=wa.shape)
            wa.assign(v)
            wb.assign(v)
    a.initialize_from_data(x)
    h = x
    for step in b.steps:
        h = step.adapt(h)
    for wa, wb in zip(a.weights, b.weights):
        if wb.path.endswith("data_initialized"):
            continue
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    np.testing.assert_allclose(a.encode(x), h, rtol=1e-5, atol=1e-5)
