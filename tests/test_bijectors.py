"""The bijectors against TFP's own, the NICE formula by hand, shapes and bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_nice as tn
from tfp_nice.bijectors._partition import MaskPartition
from conftest import record_error
from helpers import (
    affine_coupling,
    coupling,
    nice_chain,
    numpy_nice_log_prob,
    random_log_scale,
    random_mlp,
)

tfb = tfp.bijectors
tfd = tfp.distributions


def _logistic(d, dtype):
    return tfd.Independent(tfd.Logistic(tf.zeros(d, dtype), tf.ones(d, dtype)), 1)


def _tfp_coupling(mask, shift_fn):
    """TFP's NICE coupling (`RealNVP`, shift only) behind a permutation for any mask."""
    flat = np.asarray(mask).reshape(-1)
    order = np.concatenate([np.flatnonzero(flat), np.flatnonzero(~flat)])
    permute = tfb.Permute(permutation=order.astype(np.int32))
    real_nvp = tfb.RealNVP(
        num_masked=int(flat.sum()),
        shift_and_log_scale_fn=lambda x0, n_out: (shift_fn(x0), None),
    )
    return tfb.Chain([tfb.Invert(permute), real_nvp, permute])


# --- agreement with TFP's own NICE coupling --------------------------------------------


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("partition", ["halves", "odd_even"])
def test_additive_coupling_agrees_with_tfp_real_nvp(partition, dtype):
    d = 7
    mask = tn.partition_mask(partition, (d,))
    ours = coupling(mask, dtype, seed=21)
    theirs = _tfp_coupling(mask, ours.shift_fn)
    if partition == "halves":  # no permutation needed: RealNVP's own layout
        theirs = tfb.RealNVP(num_masked=d // 2,
                             shift_and_log_scale_fn=lambda x0, n: (ours.shift_fn(x0), None))
    x = tf.constant(np.random.default_rng(1).normal(size=(9, d)), dtype)
    tol = 1e-6 if dtype == tf.float32 else 1e-13
    np.testing.assert_allclose(ours.forward(x), theirs.forward(tf.identity(x)), atol=tol)
    np.testing.assert_allclose(ours.inverse(x), theirs.inverse(tf.identity(x)), atol=tol)
    base = _logistic(d, dtype)
    lp_ours = tfd.TransformedDistribution(base, ours).log_prob(x)
    lp_theirs = tfd.TransformedDistribution(base, theirs).log_prob(tf.identity(x))
    record_error("log_prob vs tfb.RealNVP", dtype, np.max(np.abs(lp_ours - lp_theirs)))
    np.testing.assert_allclose(lp_ours, lp_theirs, atol=tol * 10)


def test_nice_chain_agrees_with_chain_of_tfp_bijectors():
    """The reference is built from the networks and literal masks alone, in NICE's
    order, with TFP's own bijectors (none of the chain under test)."""
    dtype, d = tf.float64, 6
    nets = [random_mlp(3, 3, dtype, seed=31 + k) for k in range(4)]
    log_scale = random_log_scale((d,), dtype, seed=131)
    g = tn.nice_bijector((d,), nets, partition="odd_even", log_scale=log_scale)
    # The first coupling conditions on entries 0, 2, 4 (the paper's odd 1-based ones).
    first = np.array([True, False] * 3)
    masks = [first, ~first, first, ~first]
    # f = Scale o C_4 o C_3 o C_2 o C_1 (tfb.Chain applies its list right to left).
    reference_f = tfb.Chain(
        [tfb.Scale(tf.exp(tf.convert_to_tensor(log_scale)))]
        + [_tfp_coupling(masks[k], nets[k]) for k in reversed(range(4))]
    )
    base = _logistic(d, dtype)
    x = tf.constant(np.random.default_rng(2).normal(size=(11, d)), dtype)
    ours = tfd.TransformedDistribution(base, g).log_prob(x)
    theirs = tfd.TransformedDistribution(base, tfb.Invert(reference_f)).log_prob(tf.identity(x))
    record_error("NICE chain vs TFP chain", dtype, np.max(np.abs(ours - theirs)))
    np.testing.assert_allclose(ours, theirs, atol=1e-10)


# --- the NICE formula by hand -------------------------------------------------------------


@pytest.mark.parametrize(
    "event_shape,partition,log_scale_shape",
    [((6,), "odd_even", (6,)), ((5,), "halves", (5,)), ((4, 4, 2), "checkerboard", (2,))],
    ids=["vector-odd-even", "vector-halves", "image-per-channel-scale"],
)
def test_log_prob_equals_nice_formula_by_hand(event_shape, partition, log_scale_shape):
    dtype = tf.float64
    masks = tn.coupling_masks(event_shape, 4, partition)
    nets = [random_mlp(int(m.sum()), int((~m).sum()), dtype, seed=41 + k)
            for k, m in enumerate(masks)]
    log_scale = random_log_scale(log_scale_shape, dtype, seed=42)
    g = tn.nice_bijector(event_shape, nets, partition=partition, log_scale=log_scale)
    base = tfd.Independent(
        tfd.Logistic(tf.zeros(event_shape, dtype), tf.ones(event_shape, dtype)),
        len(event_shape))
    x = np.random.default_rng(3).normal(size=(10,) + event_shape)
    ours = tfd.TransformedDistribution(base, g).log_prob(tf.constant(x, dtype)).numpy()
    by_hand = numpy_nice_log_prob(x, masks, nets, log_scale.numpy())
    assert ours.shape == (10,)
    record_error("log_prob vs NICE by hand", dtype, np.max(np.abs(ours - by_hand)))
    np.testing.assert_allclose(ours, by_hand, rtol=0, atol=1e-10)


def test_rescaling_log_det_counts_every_pixel_for_per_channel_scale():
    log_scale = tf.constant([0.5, -0.25, 1.0])
    bij = tn.Rescaling(log_scale)
    x = tf.ones((2, 4, 5, 3))
    ldj = bij.forward_log_det_jacobian(x, event_ndims=3)
    np.testing.assert_allclose(ldj, [4 * 5 * 1.25] * 2, rtol=1e-6)
    np.testing.assert_allclose(bij.forward(x)[0, 1, 2], np.exp([0.5, -0.25, 1.0]), rtol=1e-6)


# --- distribution shapes and gradients -------------------------------------------------


@pytest.mark.parametrize("sample_shape", [(), (5,), (2, 3)], ids=str)
@pytest.mark.parametrize("event_shape", [(6,), (4, 4, 2)], ids=["vector", "image"])
def test_sample_and_log_prob_shapes(sample_shape, event_shape):
    partition = "odd_even" if len(event_shape) == 1 else "checkerboard"
    g, _ = nice_chain(event_shape, tf.float32, seed=51, partition=partition)
    base = tfd.Independent(tfd.Logistic(tf.zeros(event_shape), 1.0), len(event_shape))
    dist = tfd.TransformedDistribution(base, g)
    assert dist.event_shape == event_shape and dist.batch_shape == ()
    xs = dist.sample(sample_shape, seed=7)
    assert xs.shape == sample_shape + event_shape
    lp = dist.log_prob(xs)
    assert lp.shape == sample_shape
    assert np.all(np.isfinite(lp))


def test_gradient_reaches_every_weight_through_log_prob():
    g, variables = nice_chain((6,), tf.float32, seed=61)
    dist = tfd.TransformedDistribution(_logistic(6, tf.float32), g)
    x = tf.random.normal((32, 6))
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(dist.log_prob(x))
    grads = tape.gradient(loss, variables)
    assert len(variables) == 4 * 6 + 1
    for v, grad in zip(variables, grads):
        assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0, v.name


def test_log_scale_gradient_is_minus_one_per_entry_for_nll_of_rescaling_only():
    # d/ds of -log p(x) for p = logistic pushed through g = Rescaling(s)^{-1} ... at s=0
    # is sum_d h_d * dlog p_H/dh_d - 1; checked against the closed form here.
    s = keras.Variable(np.zeros(3, "float32"))
    dist = tfd.TransformedDistribution(_logistic(3, tf.float32), tfb.Invert(tn.Rescaling(s)))
    x = tf.constant([[0.3, -1.2, 2.0]])
    with tf.GradientTape() as tape:
        nll = -tf.reduce_sum(dist.log_prob(x))
    grad = tape.gradient(nll, s)
    h = x.numpy()[0]
    dlogp_dh = -np.tanh(h / 2.0)  # derivative of the standard logistic log-density
    np.testing.assert_allclose(grad, -(h * dlogp_dh) - 1.0, rtol=1e-5)


# --- partitions ------------------------------------------------------------------------------


def test_partition_masks_are_what_they_say():
    np.testing.assert_array_equal(tn.partition_mask("halves", (5,)), [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(tn.partition_mask("odd_even", (5,)), [1, 0, 1, 0, 1])
    board = tn.partition_mask("checkerboard", (2, 3, 2))
    np.testing.assert_array_equal(board[..., 0], [[1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(board[..., 0], board[..., 1])
    chan = tn.partition_mask("channel", (2, 2, 4))
    np.testing.assert_array_equal(chan[0, 0], [1, 1, 0, 0])
    assert chan.all(axis=-1).sum() == 0 and chan[..., :2].all()


# Each way MaskPartition splits (see tfp_nice/bijectors/_partition.py) against numpy
# fancy indexing: part A is mask's entries in flat order, B the rest.
LAYOUT_CASES = [
    (tn.partition_mask("odd_even", (8,)), "transpose"),       # NICE: runs of 1, A first
    (~tn.partition_mask("odd_even", (8,)), "transpose"),      # the swapped side: B first
    (tn.partition_mask("halves", (7,)), "runs"),               # one period, unequal runs
    (~tn.partition_mask("halves", (6,)), "runs"),
    (tn.partition_mask("channel", (2, 3, 4)), "channel"),     # parts (2, 3, 2) each
    (~tn.partition_mask("channel", (2, 3, 4)), "channel"),    # B's channels first
    (np.broadcast_to([True, False, True, False, False], (2, 2, 5)), "channel"),  # gathered
    (np.tile([True, False, False], 4), "runs"),               # period 3, unequal runs
    (np.tile([False, False, True, True], (2, 2)), "transpose"),  # rank 2: flat parts
    (tn.partition_mask("odd_even", (7,)), "gather"),          # odd size: not periodic
    (tn.partition_mask("checkerboard", (4, 4, 2)), "gather"),
    (np.array([True, False, True, True, False, False]), "gather"),
]


@pytest.mark.parametrize("mask,layout", LAYOUT_CASES)
def test_partition_layouts_split_like_fancy_indexing(mask, layout):
    part = MaskPartition(mask)
    assert part.layout == layout
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3) + mask.shape)
    flat = x.reshape(6, -1)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        a, b, batch_shape = part.split(xt)
        weights_a, weights_b = rng.normal(size=a.shape), rng.normal(size=b.shape)
        objective = tf.reduce_sum(a * weights_a) + tf.reduce_sum(b * weights_b)
    if layout == "channel":  # the parts keep the image's shape: x[..., channels of A]
        channels = mask.reshape(-1, mask.shape[-1])[0]
        grid = x.reshape((6,) + mask.shape)
        np.testing.assert_array_equal(a, grid[..., channels])
        np.testing.assert_array_equal(b, grid[..., ~channels])
        assert part.shape_a == mask.shape[:-1] + (int(channels.sum()),)
    else:
        assert part.shape_a == (int(mask.sum()),)
    assert a.shape[1:] == part.shape_a and b.shape[1:] == part.shape_b
    # In flat order each part is the mask's entries in their flat order in the event.
    np.testing.assert_array_equal(np.reshape(a, (6, -1)), flat[:, mask.reshape(-1)])
    np.testing.assert_array_equal(np.reshape(b, (6, -1)), flat[:, ~mask.reshape(-1)])
    np.testing.assert_array_equal(part.merge(a, b, batch_shape), x)
    expected = np.zeros_like(flat)
    expected[:, mask.reshape(-1)] = np.reshape(weights_a, (6, -1))
    expected[:, ~mask.reshape(-1)] = np.reshape(weights_b, (6, -1))
    np.testing.assert_array_equal(tape.gradient(objective, xt), expected.reshape(x.shape))


@pytest.mark.parametrize("mask,layout", LAYOUT_CASES)
def test_partition_layouts_under_xla(mask, layout):
    part = MaskPartition(mask)
    x = tf.constant(np.random.default_rng(4).normal(size=(5,) + mask.shape), tf.float32)

    @tf.function(jit_compile=True)
    def round_trip(x):
        a, b, batch_shape = part.split(x)
        return part.merge(a, b, batch_shape)

    np.testing.assert_array_equal(round_trip(x), x)


def _mixed_couplings(mask, dtype, seed):
    """Additive and affine couplings alternating the sides of `mask`, random weights."""
    masks = [mask, ~mask, mask, ~mask]
    made = []
    for k, m in enumerate(masks):
        if k % 2:
            made.append(affine_coupling(m, dtype, seed + k))
        else:
            made.append(coupling(m, dtype, seed + k))
    return made


@pytest.mark.parametrize("mask,layout", LAYOUT_CASES)
def test_coupling_block_is_the_chain_of_its_couplings(mask, layout):
    couplings = _mixed_couplings(mask, tf.float64, seed=40)
    block = tn.CouplingBlock(couplings)
    chain = tfb.Chain(couplings[::-1])  # TFP's own composition, coupling by coupling
    x = tf.constant(np.random.default_rng(5).normal(size=(2, 3) + mask.shape))
    nd = mask.ndim
    spec = tf.TensorSpec((None, None) + mask.shape, tf.float64)
    for bij in (block, chain):
        assert bij.forward(x).shape == x.shape
    graph = tf.function(lambda t: (block.forward(t), block.inverse(t),
                                   block.forward_log_det_jacobian(t, nd),
                                   block.inverse_log_det_jacobian(t, nd)),
                        input_signature=[spec])
    want = (chain.forward(x), chain.inverse(x), chain.forward_log_det_jacobian(x, nd),
            chain.inverse_log_det_jacobian(x, nd))
    for got in (graph(x), (block.forward(tf.identity(x)), block.inverse(tf.identity(x)),
                           block.forward_log_det_jacobian(tf.identity(x), nd),
                           block.inverse_log_det_jacobian(tf.identity(x), nd))):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    assert np.abs(want[2].numpy()).min() > 1e-3  # the affine couplings' log-dets count


def test_coupling_block_refuses_a_mask_of_another_partition():
    mask = tn.partition_mask("odd_even", (6,))
    with pytest.raises(ValueError, match="coupling 1 .* neither the first coupling's nor"):
        tn.CouplingBlock([coupling(mask, tf.float32, 1),
                          coupling(tn.partition_mask("halves", (6,)), tf.float32, 2)])
    with pytest.raises(TypeError, match="entry 0 is a Shift"):
        tn.CouplingBlock([tfb.Shift(1.0)])
    with pytest.raises(ValueError, match="at least one coupling"):
        tn.CouplingBlock([])


def test_fuse_couplings_groups_runs_over_one_partition_only():
    from tfp_nice.bijectors import fuse_couplings

    odd, halves = tn.partition_mask("odd_even", (6,)), tn.partition_mask("halves", (6,))
    c = [coupling(m, tf.float32, k) for k, m in enumerate([odd, ~odd, odd, halves, ~halves])]
    shift = tfb.Shift(1.0)
    fused = fuse_couplings([c[0], c[1], shift, c[2], c[3], c[4]])
    kinds = [type(b).__name__ for b in fused]
    assert kinds == ["CouplingBlock", "Shift", "AdditiveCoupling", "CouplingBlock"]
    assert fused[0].couplings == c[:2] and fused[3].couplings == c[3:]


def _ops_to(concrete, op_type):
    """How many `op_type` ops the values of `concrete`'s outputs depend on (through data
    inputs; a `Shape` op needs its input's shape only, which grappler finds without it)."""
    nodes = {node.name: node for node in concrete.graph.as_graph_def().node}
    todo = [t.op.name for t in tf.nest.flatten(concrete.outputs)]
    seen = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if nodes[name].op != "Shape":
            todo += [i.split(":")[0] for i in nodes[name].input if not i.startswith("^")]
    return sum(nodes[name].op == op_type for name in seen)


@pytest.mark.parametrize("coupling", ["additive", "affine"])
def test_a_graph_for_any_batch_does_not_rearrange_between_couplings(coupling):
    # A SavedModel's signatures are traced for [None, D]; grappler then cannot drop the
    # merge/split rearrangement between consecutive couplings (it can when N is known).
    model = tn.NICE((64,), num_couplings=4, hidden_units=(8,), coupling=coupling)
    spec = tf.TensorSpec((None, 64), tf.float32)
    for fn in (model.log_prob, model.encode, model.decode):
        concrete = tf.function(fn).get_concrete_function(spec)
        assert _ops_to(concrete, "Transpose") == 2  # into the first coupling, out of the last


def test_gradient_with_respect_to_a_couplings_output_flows_through_the_next():
    first, second = (coupling(mask, tf.float64, seed=s) for mask, s in
                     zip(tn.coupling_masks((6,), 2, "odd_even"), (81, 82)))
    x = tf.constant(np.random.default_rng(7).normal(size=(3, 6)))

    @tf.function
    def jacobian(x):
        with tf.GradientTape() as tape:
            y = first.forward(x)
            tape.watch(y)
            z = second.forward(y)
        return tape.batch_jacobian(z, y, unconnected_gradients="zero")

    def eager_second(y):
        with tf.GradientTape() as tape:
            tape.watch(y)
            z = second.forward(y)
        return tape.batch_jacobian(z, y)

    got = jacobian(x)
    np.testing.assert_allclose(got, eager_second(first.forward(x)), rtol=1e-12, atol=1e-12)
    assert np.abs(got.numpy() - np.eye(6)).max() > 1e-3  # the coupling's network is in it


@pytest.mark.parametrize("kwargs", [
    {"event_shape": (6,), "coupling": "additive"},
    {"event_shape": (6,), "coupling": "affine", "partition": "halves"},
    {"event_shape": (4, 4, 2), "coupling": "affine", "partition": "checkerboard"},
    {"event_shape": (4, 4, 2), "coupling": "additive", "partition": "channel"},
])
def test_graph_log_prob_and_gradients_equal_eager_ones(kwargs):
    # Eager tensors never take the parts a merge was given: an independent path.
    event_shape = kwargs.pop("event_shape")
    model = tn.NICE(event_shape, num_couplings=4, hidden_units=(8,), dtype="float64",
                    **kwargs)
    rng = np.random.default_rng(6)
    for v in model.trainable_variables:
        v.assign(rng.normal(scale=0.3, size=v.shape))
    x = tf.constant(rng.normal(size=(2, 3) + event_shape))
    weights = tf.constant(rng.normal(size=(2, 3)))

    def value_and_grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            lp = model.log_prob(x)
            z = model.encode(x)
            objective = tf.reduce_sum(lp * weights) + tf.reduce_sum(z**2)
        return lp, z, tape.gradient(objective, [x] + model.trainable_variables)

    def values(x):  # no tape: the couplings take the parts the previous one merged
        z = model.encode(x)
        return model.log_prob(x), z, model.decode(z)

    spec = [tf.TensorSpec((None, None) + event_shape, tf.float64)]
    for fn in (value_and_grads, values):
        got, want = tf.function(fn, input_signature=spec)(x), fn(x)
        for g, w in zip(tf.nest.flatten(got), tf.nest.flatten(want)):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_coupling_masks_alternate():
    masks = tn.coupling_masks((5,), 4, "odd_even")
    for k, m in enumerate(masks):
        np.testing.assert_array_equal(m, masks[0] if k % 2 == 0 else ~masks[0])


def test_couplings_together_transform_every_entry():
    g, _ = nice_chain((7,), tf.float64, seed=71, partition="halves", rescaling=False)
    changed = np.zeros(7, bool)
    for c in g.bijector.bijectors:
        changed |= ~c.mask
    assert changed.all()


# --- networks ------------------------------------------------------------------------------


def test_fresh_coupling_mlp_makes_the_identity():
    net = tn.CouplingMLP((32, 32), 3)
    bij = tn.AdditiveCoupling(net, tn.partition_mask("odd_even", (6,)))
    x = tf.random.normal((4, 6))
    np.testing.assert_array_equal(bij.forward(x), x)
    assert len(net.trainable_weights) == 6


def test_coupling_mlp_config_round_trip():
    net = tn.CouplingMLP((8, 4), 3, activation="tanh", name="m")
    clone = tn.CouplingMLP.from_config(net.get_config())
    assert clone.hidden_units == (8, 4) and clone.output_units == 3
    assert clone.get_config() == net.get_config()


def test_zero_log_scale_is_identity():
    bij = tn.Rescaling(tf.zeros(4))
    x = tf.random.normal((3, 4))
    np.testing.assert_array_equal(bij.forward(x), x)
    np.testing.assert_array_equal(bij.forward_log_det_jacobian(x, event_ndims=1), [0, 0, 0])


def test_rescaling_follows_its_variable():
    v = keras.Variable(np.zeros(2, "float32"))
    bij = tn.Rescaling(v)
    v.assign([1.0, 2.0])
    np.testing.assert_allclose(bij.forward(tf.ones((1, 2))), np.exp([[1.0, 2.0]]), rtol=1e-6)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(tf.ones((1, 2)), 1), [3.0])


# --- bad input -------------------------------------------------------------------------------


def test_event_size_not_matching_mask():
    bij = coupling(tn.partition_mask("odd_even", (5,)), tf.float32, seed=1)
    with pytest.raises(ValueError, match=r"event shape \(5,\).*\(4,\)"):
        bij.forward(tf.zeros((2, 4)))
    with pytest.raises(ValueError, match="event shape"):
        bij.inverse_log_det_jacobian(tf.zeros((2, 6)), event_ndims=1)


def test_mask_of_wrong_shape():
    nets = [random_mlp(2, 2, tf.float32, seed=1)]
    with pytest.raises(ValueError, match=r"mask has shape \(4,\).*event shape is \(5,\)"):
        tn.nice_bijector((5,), nets, partition=np.array([True, False, True, False]))
    with pytest.raises(ValueError, match="scalar"):
        tn.AdditiveCoupling(nets[0], True)


@pytest.mark.parametrize("mask", [np.ones(4, bool), np.zeros(4, bool)], ids=["all-true", "all-false"])
def test_mask_with_an_empty_side(mask):
    with pytest.raises(ValueError, match="empty"):
        tn.AdditiveCoupling(lambda a: a, mask)


def test_mask_that_is_not_boolean():
    with pytest.raises(ValueError, match="boolean"):
        tn.AdditiveCoupling(lambda a: a, np.array([0.5, 1.0]))


def test_event_too_small_to_split():
    with pytest.raises(ValueError, match="empty"):
        tn.partition_mask("halves", (1,))


@pytest.mark.parametrize(
    "partition,event_shape,message",
    [("diagonal", (4,), "Unknown partition"),
     ("checkerboard", (6,), "checkerboard"),
     ("channel", (4, 4), "channel")],
)
def test_bad_partition(partition, event_shape, message):
    with pytest.raises(ValueError, match=message):
        tn.partition_mask(partition, event_shape)


def test_non_float_input():
    bij = coupling(tn.partition_mask("odd_even", (4,)), tf.float32, seed=1)
    with pytest.raises(TypeError, match="floating.*int32"):
        bij.forward(tf.zeros((2, 4), tf.int32))
    with pytest.raises(TypeError, match="floating.*int32"):
        tn.Rescaling(tf.zeros(3)).forward(tf.zeros((2, 3), tf.int32))


def test_non_float_log_scale():
    with pytest.raises(TypeError, match="log_scale must have a floating dtype, got int32"):
        tn.Rescaling(tf.zeros(3, tf.int32))


def test_dtype_mismatch_between_data_and_network():
    bij = coupling(tn.partition_mask("odd_even", (4,)), tf.float32, seed=1)
    with pytest.raises(TypeError, match="float32.*float64"):
        bij.forward(tf.zeros((2, 4), tf.float64))


def test_shift_fn_with_wrong_output_size():
    bij = tn.AdditiveCoupling(lambda a: tf.concat([a, a], axis=-1),
                              tn.partition_mask("halves", (5,)))
    with pytest.raises(ValueError, match=r"\[batch, 3\].*\(2, 4\)"):
        bij.forward(tf.zeros((2, 5)))


def test_non_callable_shift_fn():
    with pytest.raises(TypeError, match="callable"):
        tn.AdditiveCoupling("relu", tn.partition_mask("halves", (4,)))


def test_log_scale_of_wrong_shape():
    nets = [random_mlp(2, 3, tf.float32, seed=1)]
    with pytest.raises(ValueError, match=r"log_scale has shape \(4,\).*event shape \(5,\)"):
        tn.nice_bijector((5,), nets, partition="halves", log_scale=tf.zeros(4))
    with pytest.raises(ValueError, match=r"event shape \(4,\).*\(5,\)"):
        tn.Rescaling(tf.zeros(4)).forward(tf.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"log_scale has shape \(3,\)"):
        tn.nice_bijector((4, 4, 2), [random_mlp(16, 16, tf.float32, 1)],
                         partition="checkerboard", log_scale=tf.zeros(3))


def test_network_width_not_matching_coupling():
    with pytest.raises(ValueError, match="returns 2 values but coupling 0 transforms 3"):
        tn.nice_bijector((5,), [tn.CouplingMLP((4,), 2)], partition="halves")


def test_no_shift_networks():
    with pytest.raises(ValueError, match="at least one"):
        tn.nice_bijector((5,), [])


@pytest.mark.parametrize("bad", [(0,), (4, -1), (2.5,), ("8",)], ids=str)
def test_coupling_mlp_bad_sizes(bad):
    with pytest.raises(ValueError, match=r"hidden_units entry must be an int >= 1. Received"):
        tn.CouplingMLP(bad, 3)


def test_validate_args_rejects_non_finite_constant_log_scale():
    with pytest.raises(tf.errors.InvalidArgumentError, match="log_scale must be finite"):
        tn.Rescaling(tf.constant([0.0, np.nan]), validate_args=True)


def test_validate_args_rejects_non_finite_variable_log_scale_at_call():
    v = tf.Variable([0.0, 0.0])
    bij = tn.Rescaling(v, validate_args=True)
    bij.forward(tf.ones((1, 2)))
    v.assign([0.0, np.inf])
    with pytest.raises(tf.errors.InvalidArgumentError, match="log_scale must be finite"):
        bij.forward(tf.ones((1, 2)))


def test_without_validate_args_non_finite_log_scale_is_not_checked():
    bij = tn.Rescaling(tf.constant([0.0, np.nan]))
    assert np.isnan(bij.forward(tf.ones((1, 2)))[0, 1])


@pytest.mark.parametrize("dtype,limit", [(tf.float32, 40.0), (tf.float64, 300.0)])
def test_log_scales_near_the_dtype_limits_stay_finite(dtype, limit):
    huge = tf.constant([1e30, -1e30, np.inf, 85.0], dtype)
    bij = tn.Rescaling(huge)
    x = tf.constant([[1e3, 1e3, -1e3, 1.0]], dtype)
    y = bij.forward(x)
    assert np.all(np.isfinite(y))
    # clipped: [limit, -limit, limit, min(85, limit)]
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, 1), [limit + min(85.0, limit)],
                               rtol=1e-6)
    np.testing.assert_allclose(bij.inverse(tf.identity(y)), x, rtol=1e-6)
    coupling = tn.AffineCoupling(lambda a: (tf.zeros_like(a), tf.fill(tf.shape(a),
                                                                      tf.cast(1e30, dtype))),
                                 np.array([True, True, False, False]))
    y = coupling.forward(x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(coupling.forward_log_det_jacobian(x, 1)))
    np.testing.assert_allclose(coupling.forward_log_det_jacobian(x, 1), [2 * limit], rtol=1e-6)


# --- the bijectors beyond NICE, against TFP's own -----------------------------------------


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["float32", "float64"])
def test_affine_coupling_agrees_with_tfp_real_nvp(dtype):
    from helpers import affine_coupling

    d = 7
    ours = affine_coupling(tn.partition_mask("halves", (d,)), dtype, seed=3)
    net = ours.shift_and_log_scale_fn
    theirs = tfb.RealNVP(num_masked=d // 2, shift_and_log_scale_fn=lambda x0, n: net(x0))
    x = tf.constant(np.random.default_rng(4).normal(size=(9, d)), dtype)
    tol = 1e-5 if dtype == tf.float32 else 1e-12
    np.testing.assert_allclose(ours.forward(x), theirs.forward(tf.identity(x)), atol=tol)
    np.testing.assert_allclose(ours.inverse(x), theirs.inverse(tf.identity(x)), atol=tol)
    np.testing.assert_allclose(ours.forward_log_det_jacobian(x, 1),
                               theirs.forward_log_det_jacobian(tf.identity(x), 1), atol=tol)
    base = _logistic(d, dtype)
    np.testing.assert_allclose(tfd.TransformedDistribution(base, ours).log_prob(x),
                               tfd.TransformedDistribution(base, theirs).log_prob(tf.identity(x)),
                               atol=tol * 10)


def test_affine_coupling_runs_its_network_once_per_density_evaluation():
    """The log-det comes with the transform: one network call per coupling in `log_prob`,
    `sample_and_log_prob` and a flow's gradient, with TFP's `RealNVP` (which calls its
    network for the transform and again for the log-det) as the reference for the values."""
    from helpers import affine_coupling

    d = 6
    calls, couplings, variables = [], [], []
    for seed, partition in ((3, "halves"), (5, "odd_even")):
        inner = affine_coupling(tn.partition_mask(partition, (d,)), tf.float64, seed=seed)
        net = inner.shift_and_log_scale_fn
        variables += net.trainable_variables

        def counted(x_a, net=net):
            calls.append(1)
            return net(x_a)

        couplings.append(tn.AffineCoupling(counted, inner.mask))
    ours = tfd.TransformedDistribution(_logistic(d, tf.float64), tfb.Chain(
        [tfb.Invert(couplings[0]), tfb.Invert(couplings[1])]))
    x = tf.constant(np.random.default_rng(1).normal(size=(5, d)))

    lp = ours.log_prob(x)
    assert len(calls) == 2
    calls.clear()
    _, lp_sampled = ours.experimental_sample_and_log_prob(4, seed=2)
    assert len(calls) == 2 and lp_sampled.shape == (4,)
    calls.clear()
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(ours.log_prob(x))
    grads = tape.gradient(loss, variables)
    assert len(calls) == 2 and len(variables) > 0 and all(g is not None for g in grads)

    def real_nvp(coupling):
        mask = coupling.mask
        order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)]).astype(np.int32)
        permute = tfb.Permute(permutation=order)
        net = coupling.shift_and_log_scale_fn
        return tfb.Chain([tfb.Invert(permute), tfb.RealNVP(
            num_masked=int(mask.sum()), shift_and_log_scale_fn=lambda x0, n: net(x0)), permute])

    theirs = tfd.TransformedDistribution(_logistic(d, tf.float64), tfb.Chain(
        [tfb.Invert(real_nvp(couplings[0])), tfb.Invert(real_nvp(couplings[1]))]))
    np.testing.assert_allclose(lp, theirs.log_prob(tf.identity(x)), atol=1e-12)
    with tf.GradientTape() as tape:
        loss_theirs = -tf.reduce_mean(theirs.log_prob(tf.identity(x)))
    for g_ours, g_theirs in zip(grads, tape.gradient(loss_theirs, variables)):
        np.testing.assert_allclose(g_ours, g_theirs, atol=1e-12)


@pytest.mark.parametrize("raw", [100.0, -100.0, 1.0])
def test_affine_coupling_bound_limits_the_log_scale_both_ways(raw):
    """s = 2 tanh(raw / 2) from a network returning t = 0.5, s_raw = raw: the values and
    log-dets of both directions against the formula in numpy."""
    mask = tn.partition_mask("halves", (4,))  # the first two entries condition
    bij = tn.AffineCoupling(lambda a: (0.5 * tf.ones_like(a), raw * tf.ones_like(a)), mask,
                            log_scale_bound=2.0)
    s = 2.0 * np.tanh(raw / 2.0)
    x = np.random.default_rng(0).normal(size=(3, 4))
    expected_y = np.concatenate([x[:, :2], x[:, 2:] * np.exp(s) + 0.5], axis=1)
    expected_x = np.concatenate([x[:, :2], (x[:, 2:] - 0.5) * np.exp(-s)], axis=1)
    np.testing.assert_allclose(bij.forward(tf.constant(x)), expected_y, rtol=1e-12)
    np.testing.assert_allclose(bij.inverse(tf.constant(x)), expected_x, rtol=1e-12)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(tf.constant(x), event_ndims=1),
                               [2 * s] * 3, rtol=1e-12)
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(tf.constant(x), event_ndims=1),
                               [-2 * s] * 3, rtol=1e-12)
    assert abs(s) <= 2.0


def test_affine_mlp_starts_as_the_identity_with_learned_bound():
    net = tn.CouplingMLP((8,), 3, affine=True)
    bij = tn.AffineCoupling(net, tn.partition_mask("odd_even", (6,)))
    x = tf.random.normal((4, 6))
    np.testing.assert_array_equal(bij.forward(x), x)
    assert "log_scale_bound" in [w.name for w in net.trainable_weights]
    net.output_layer.kernel.assign(100.0 * tf.ones_like(net.output_layer.kernel))
    shift, log_scale = net(x[:, ::2])
    assert float(tf.reduce_max(tf.abs(log_scale))) <= 1.0 + 1e-6


def test_lu_linear_agrees_with_tfp_and_its_matrix():
    from helpers import lu_linear

    bij, _ = lu_linear((5,), tf.float64, seed=3)
    theirs = tfb.ScaleMatvecLU(bij.lower_upper(), bij._permutation())
    x = tf.constant(np.random.default_rng(5).normal(size=(6, 5)))
    np.testing.assert_allclose(bij.forward(x), theirs.forward(tf.identity(x)), atol=1e-12)
    np.testing.assert_allclose(bij.inverse(x), theirs.inverse(tf.identity(x)), atol=1e-12)
    w = bij.matrix().numpy()
    np.testing.assert_allclose(bij.forward(x), x.numpy() @ w.T, atol=1e-12)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, 1)[0],
                               np.linalg.slogdet(w)[1], atol=1e-12)


def test_lu_linear_init_is_a_rotation():
    init = tn.lu_linear_init(6, seed=0)
    bij = tn.LULinear(init["lower"], init["upper"], init["log_diag"], init["sign"],
                      init["permutation"], (6,))
    w = bij.matrix().numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(6), atol=1e-10)
    assert abs(init["log_diag"].sum()) < 1e-10


@pytest.mark.parametrize("event_shape", [(6,), (2, 3)], ids=["vector", "matrix"])
def test_permutation_agrees_with_tfp_permute_and_numpy_both_ways(event_shape):
    perm = tn.random_permutation(6, seed=1)
    assert not np.array_equal(perm, np.arange(6))
    x = np.random.default_rng(2).normal(size=(3, 6)).astype("float32")
    ours = tn.Permutation(perm, event_shape)
    shaped = tf.constant(x.reshape((3,) + event_shape))
    forward = tf.reshape(ours.forward(shaped), (3, 6))
    inverse = tf.reshape(ours.inverse(tf.identity(shaped)), (3, 6))
    np.testing.assert_array_equal(forward, tfb.Permute(perm).forward(x))
    np.testing.assert_array_equal(inverse, tfb.Permute(perm).inverse(x))
    np.testing.assert_array_equal(forward, x[:, perm])  # y_i = x_perm[i]
    np.testing.assert_array_equal(inverse, x[:, np.argsort(perm)])
    event_ndims = len(event_shape)
    np.testing.assert_array_equal(ours.forward_log_det_jacobian(shaped, event_ndims), 0.0)
    np.testing.assert_array_equal(ours.inverse_log_det_jacobian(shaped, event_ndims), 0.0)


def test_actnorm_is_shift_then_scale():
    s, b = tf.constant([0.5, -1.0]), tf.constant([2.0, 3.0])
    ours = tn.ActNorm(s, b)
    theirs = tfb.Chain([tfb.Scale(tf.exp(s)), tfb.Shift(b)])
    x = tf.random.normal((4, 2))
    np.testing.assert_allclose(ours.forward(x), theirs.forward(x), rtol=1e-6)
    np.testing.assert_allclose(ours.forward_log_det_jacobian(x, 1),
                               theirs.forward_log_det_jacobian(x, 1), rtol=1e-6)


def test_bad_arguments_of_the_new_bijectors():
    with pytest.raises(ValueError, match="permutation of range\\(4\\)"):
        tn.Permutation([0, 1, 1, 2], (4,))
    with pytest.raises(ValueError, match="log_scale_bound must be > 0"):
        tn.AffineCoupling(lambda a: a, tn.partition_mask("halves", (4,)), log_scale_bound=0.0)
    bad = tn.AffineCoupling(lambda a: a, tn.partition_mask("halves", (4,)))
    with pytest.raises(ValueError, match=r"\[batch, 4\] tensor or a pair"):
        bad.forward(tf.zeros((2, 4)))
    with pytest.raises(ValueError, match="shift has shape \\(3,\\)"):
        tn.ActNorm(tf.zeros(2), tf.zeros(3))
    init = tn.lu_linear_init(4, seed=0)
    with pytest.raises(ValueError, match="lower must have shape \\(5, 5\\)"):
        tn.LULinear(init["lower"], init["upper"], init["log_diag"], init["sign"],
                    init["permutation"], (5,))
    with pytest.raises(ValueError, match="coupling must be one of"):
        tn.nice_bijector((4,), [lambda a: a], coupling="quadratic")
