"""Benchmarks: tfp_nice against TFP's own RealNVP chain and a bare-MLP compute limit.

    python benchmarks/run.py [--quick] [--json benchmarks/results.json]

Each comparison runs its contenders in this one process, alternating rounds after
a warm-up, and reports the median of the rounds and the ratio to the reference.
Speed lives here, never in the tests.

Implemented so far: (1) training throughput of the NICE paper's MNIST architecture
through `model.fit` against a raw `tf.function` step over the same bare MLPs and
against `tfb.RealNVP(shift only)` + `tfb.Scale`, for both `jit_compile` settings;
(2) achieved GFLOP/s against a large matmul; (3) `log_prob` in-process against the
exported SavedModel; (4) a 2-D flow's `fit` against a raw loop.
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402

import tfp_nice as tn  # noqa: E402

tfb, tfd = tfp.bijectors, tfp.distributions


def alternate(contenders, rounds):
    """Runs each contender's `fn()` once per round, alternating; returns median seconds."""
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def mlp_flops(d, hidden, batch):
    """Multiply-adds x 2 of one forward pass of the 4 coupling MLPs, times 3 for training."""
    sizes = [d // 2] + list(hidden) + [d - d // 2]
    per_net = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 3 * 2 * 4 * per_net * batch


def training_throughput(d, hidden, batch, steps, rounds, jit):
    x = np.random.default_rng(0).random((batch * steps, d)).astype("float32")

    keras.utils.set_random_seed(0)
    model = tn.NICE((d,), num_couplings=4, hidden_units=hidden)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=jit)
    model.fit(x[:batch * 2], epochs=1, batch_size=batch, verbose=0)  # warm-up, data start

    # The compute limit: the same four MLPs, trained on a dummy loss, no flow at all.
    masks = tn.coupling_masks((d,), 4, "odd_even")
    nets = [tn.CouplingMLP(hidden, int((~m).sum())) for m in masks]
    for net, m in zip(nets, masks):
        net.build((None, int(m.sum())))
    bare_vars = [w for n in nets for w in n.trainable_weights]
    bare_opt = keras.optimizers.Adam(1e-3)
    index_a = [np.flatnonzero(m) for m in masks]

    @tf.function(jit_compile=jit)
    def bare_step(xb):
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_mean(net(tf.gather(xb, ia, axis=1)) ** 2)
                             for net, ia in zip(nets, index_a)])
        bare_opt.apply_gradients(zip(tape.gradient(loss, bare_vars), bare_vars))
        return loss

    # TFP's own NICE: RealNVP (shift only) behind permutations, then tfb.Scale.
    tfp_nets = [tn.CouplingMLP(hidden, d - d // 2) for _ in range(4)]
    for net in tfp_nets:
        net.build((None, d // 2))
    log_scale = tf.Variable(tf.zeros(d))
    perm = np.concatenate([np.arange(0, d, 2), np.arange(1, d, 2)]).astype(np.int32)
    layers = [tfb.Scale(tfp.util.DeferredTensor(log_scale, tf.exp))]
    for k, net in enumerate(reversed(tfp_nets)):
        real_nvp = tfb.RealNVP(num_masked=d // 2,
                               shift_and_log_scale_fn=lambda x0, n, net=net: (net(x0), None),
                               is_constant_jacobian=True)
        layers.append(real_nvp)
        layers.append(tfb.Permute(perm) if k % 2 == 0 else tfb.Invert(tfb.Permute(perm)))
    tfp_flow = tfd.TransformedDistribution(
        tfd.Independent(tfd.Logistic(tf.zeros(d), 1.0), 1), tfb.Invert(tfb.Chain(layers)))
    tfp_vars = [w for n in tfp_nets for w in n.trainable_weights] + [log_scale]
    tfp_opt = keras.optimizers.Adam(1e-3)

    @tf.function(jit_compile=jit)
    def tfp_step(xb):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(tfp_flow.log_prob(xb))
        tfp_opt.apply_gradients(zip(tape.gradient(loss, tfp_vars), tfp_vars))
        return loss

    batches = [tf.constant(x[i * batch:(i + 1) * batch]) for i in range(steps)]
    for step in (bare_step, tfp_step):
        step(batches[0]).numpy()

    def run(step):
        def go():
            for b in batches:
                loss = step(b)
            loss.numpy()
        return go

    times = alternate({
        "tfp_nice NICE.fit": lambda: model.fit(x, epochs=1, batch_size=batch, verbose=0,
                                               shuffle=False),
        "bare MLPs, raw tf.function": run(bare_step),
        "tfb.RealNVP chain, raw tf.function": run(tfp_step),
    }, rounds)
    samples = batch * steps
    return {name: samples / t for name, t in times.items()}, mlp_flops(d, hidden, batch) * steps


def matmul_gflops(n, rounds):
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    mm = tf.function(lambda: tf.matmul(a, b))
    mm().numpy()
    t = alternate({"matmul": lambda: mm().numpy()}, rounds)["matmul"]
    return 2 * n ** 3 / t / 1e9


def serving(d, hidden, batch, rounds):
    model = tn.NICE((d,), num_couplings=4, hidden_units=hidden)
    x = tf.constant(np.random.default_rng(1).random((batch, d)).astype("float32"))
    in_process = tf.function(model.log_prob)
    with tempfile.TemporaryDirectory() as tmp:
        tn.export_saved_model(model, os.path.join(tmp, "s"))
        served = tf.saved_model.load(os.path.join(tmp, "s")).signatures["log_prob"]
        in_process(x).numpy()
        served(x=x)["log_prob"].numpy()
        times = alternate({
            "in-process log_prob (tf.function)": lambda: in_process(x).numpy(),
            "SavedModel log_prob signature": lambda: served(x=x)["log_prob"].numpy(),
        }, rounds)
    return {name: batch / t for name, t in times.items()}


def small_model(rounds, steps_per_execution):
    x = tn.data.two_moons(8192, seed=0)
    model = tn.NICE((2,), num_couplings=4, hidden_units=(64, 64))
    model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=steps_per_execution)
    model.fit(x[:512], epochs=1, batch_size=128, verbose=0)
    dist = model.distribution
    opt = keras.optimizers.Adam(1e-3)
    variables = model.trainable_weights

    @tf.function
    def step(xb):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(xb))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    batches = [tf.constant(x[i:i + 128]) for i in range(0, len(x), 128)]
    step(batches[0]).numpy()

    def raw():
        for b in batches:
            loss = step(b)
        loss.numpy()

    times = alternate({
        f"NICE.fit (steps_per_execution={steps_per_execution})":
            lambda: model.fit(x, epochs=1, batch_size=128, verbose=0, shuffle=False),
        "raw tf.function loop": raw,
    }, rounds)
    return {name: len(x) / t for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else 7
    d, hidden = (64, (64,) * 2) if args.quick else (784, (1000,) * 5)
    steps = 4 if args.quick else 20
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "tensorflow": tf.__version__, "keras": keras.__version__,
                           "tfp": tfp.__version__, "tfp_nice": tn.__version__},
               "settings": {"d": d, "hidden": list(hidden), "batch": 256, "rounds": rounds}}

    print(f"1-2. training throughput, D={d}, hidden={hidden}, batch 256 (samples/s; median of "
          f"{rounds} alternating rounds)")
    peak = matmul_gflops(1024 if args.quick else 2048, rounds)
    results["matmul_gflops"] = peak
    for jit in (False, True):
        throughput, flops = training_throughput(d, hidden, 256, steps, rounds, jit)
        ours = throughput["tfp_nice NICE.fit"]
        print(f"  jit_compile={jit}")
        for name, value in throughput.items():
            print(f"    {name:<38}{value:10.0f}   ours / this = {ours / value:5.2f}")
        achieved = flops / (256 * steps / ours) / 1e9
        print(f"    NICE.fit achieved {achieved:.1f} GFLOP/s of the MLPs = "
              f"{100 * achieved / peak:.0f}% of a {peak:.1f} GFLOP/s matmul")
        results[f"training_jit_{jit}"] = {**throughput, "achieved_gflops": achieved}

    print("3. log_prob throughput (examples/s)")
    serve = serving(d, hidden, 1024, rounds)
    base = serve["in-process log_prob (tf.function)"]
    for name, value in serve.items():
        print(f"    {name:<38}{value:10.0f}   this / in-process = {value / base:5.2f}")
    results["serving"] = serve

    print("4. small-model overhead: two moons, batch 128 (samples/s)")
    for spe in (1, 16):
        small = small_model(rounds, spe)
        raw = small["raw tf.function loop"]
        for name, value in small.items():
            print(f"    {name:<44}{value:10.0f}   raw time / this time = {value / raw:5.2f}")
        results[f"small_spe_{spe}"] = small

    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
