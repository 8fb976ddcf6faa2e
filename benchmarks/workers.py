"""The benchmarks' worker side: each task runs in a fresh process of `run.py --worker`
and prints its result (see run.py). Tasks import TensorFlow and tfp_nice themselves, so
that a `--baseline` checkout's tfp_nice can be put first on the path."""

import json
import os
import pathlib
import statistics
import sys
import time


HERE = pathlib.Path(__file__).resolve().parent
MNIST = HERE.parents[1] / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
PAPER_HIDDEN = (1000,) * 5
PAPER_NATS = 1980.5  # NICE's paper, MNIST test set (after 1,500 epochs on 60,000 images)
SERVE_WAYS = ("signature in tf.function", "signature", "restored function")
# Section 7's arms: a preset of tfp_nice.presets and its arguments.
QUALITY_ARMS = {
    "paper: nice_mnist(rescaling_init='zeros')": ("nice_mnist", {"rescaling_init": "zeros"}),
    "nice_mnist()": ("nice_mnist", {}),
    "affine_mnist()": ("affine_mnist", {}),
    "glow_mnist()": ("glow_mnist", {}),
}
QUALITY_BATCH = {"glow_mnist()": 64}  # each recipe's batch size; 256 for the others
TARGETS = {
    "fit / RealNVP chain": (">=", 1.05),
    "fit / bare MLPs": (">=", 0.95),
    "fit / nflows": (">=", 1.4),
    "share of matmul GFLOP/s": (">=", 0.75),
    "SavedModel / in-process log_prob": (">=", 0.95),
    "2-D fit time / raw loop time": ("<=", 1.3),
}



def alternate(contenders, rounds):
    """Runs each contender once per round, alternating; returns median seconds per run."""
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_gflops(n, rounds):
    import tensorflow as tf

    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    mm = tf.function(lambda: tf.matmul(a, b))
    mm().numpy()

    def run():
        for _ in range(5):
            out = mm()
        out.numpy()
    return 5 * 2 * n ** 3 / alternate({"matmul": run}, rounds)["matmul"] / 1e9


def _data(d, n, seed=0):
    import numpy as np

    return np.random.default_rng(seed).random((n, d)).astype("float32")


def task_train(d, hidden, batch, steps, rounds, jit, nflows=True, matmul=True):
    """Sections 1-2 and 6: samples/s of each contender, and GFLOP/s."""
    import tensorflow as tf

    import contenders as c

    x = _data(d, batch * steps)
    batches = [tf.constant(x[i * batch:(i + 1) * batch]) for i in range(steps)]
    runs = {"NICE.fit": c.nice_fit(x, d, hidden, batch, jit),
            "NICE.fit, mixed_bfloat16": c.nice_fit(x, d, hidden, batch, jit,
                                                   policy="mixed_bfloat16"),
            "NICE flow, raw step": c.nice_raw_step(batches, d, hidden, jit),
            "bare MLPs": c.bare_mlps(batches, d, hidden, jit),
            "RealNVP chain": c.tfp_real_nvp(batches, d, hidden, jit)}
    skipped = {}
    if nflows:
        why = c.nflows_available()
        if why is None:
            runs["nflows"] = c.nflows_flow([b.numpy() for b in batches], d, hidden)
        else:
            skipped["nflows"] = why
    for run in runs.values():  # one more warm-up round
        run()
    seconds = alternate(runs, rounds)
    out = {"samples_per_s": {k: batch * steps / t for k, t in seconds.items()},
           "skipped": skipped,
           "fit_gflops": c.training_flops(d, hidden, batch) * steps / seconds["NICE.fit"] / 1e9}
    if matmul:
        out["matmul_n"] = 2048 if d >= 784 else 512
        out["matmul_gflops"] = matmul_gflops(out["matmul_n"], rounds)
    return out


def task_serve(d, hidden, batches, rounds):
    """Section 3: the SavedModel's `log_prob`, called each way, against in-process, and
    `sample` against in-process at the largest batch."""
    import tempfile

    import tensorflow as tf

    import tfp_nice as tn

    model = tn.NICE((d,), num_couplings=4, hidden_units=hidden)
    model.compile("adam")
    model.fit(_data(d, 512), epochs=1, batch_size=256, verbose=0)  # data init: not the identity
    in_process = tf.function(model.log_prob)
    out = {"log_prob": {}, "max_abs_log_prob_difference": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        model.export(os.path.join(tmp, "saved"))
        served = tf.saved_model.load(os.path.join(tmp, "saved"))
        signature = served.signatures["log_prob"]
        wrapped = tf.function(signature)
        for batch in batches:
            x = tf.constant(_data(d, batch, seed=1))
            runs = {
                "in-process": lambda: in_process(x).numpy(),
                "signature": lambda: signature(x=x)["log_prob"].numpy(),
                "signature in tf.function": lambda: wrapped(x=x)["log_prob"].numpy(),
                "restored function": lambda: served.log_prob(x)["log_prob"].numpy(),
            }
            calls = max(1, 4096 // batch)  # one timed run: many calls of a small batch

            def repeated(run):
                def go():
                    for _ in range(calls):
                        run()
                return go

            for run in runs.values():
                run()
            seconds = alternate({k: repeated(v) for k, v in runs.items()}, rounds)
            out["log_prob"][str(batch)] = {k: t / calls * 1e3 for k, t in seconds.items()}
            diff = float(tf.reduce_max(tf.abs(wrapped(x=x)["log_prob"] - in_process(x))))
            out["max_abs_log_prob_difference"] = max(out["max_abs_log_prob_difference"], diff)
        batch = batches[-1]
        sample = tf.function(lambda: model.sample(batch, seed=None))
        wrapped_sample = tf.function(served.signatures["sample"])
        runs = {"in-process": lambda: sample().numpy(),
                "signature in tf.function": lambda: wrapped_sample(
                    num_samples=tf.constant(batch), temperature=tf.constant(1.0),
                    seed=tf.constant(-1, tf.int64))["x"].numpy()}
        for run in runs.values():
            run()
        seconds = alternate(runs, rounds)
        out["sample"] = {"batch": batch, **{k: t * 1e3 for k, t in seconds.items()}}
    return out


def task_small(rounds, spe_values, epochs=4):
    """Section 4: a 2-D flow through `fit` against a raw `tf.function` loop.

    A round is one `fit` call of `epochs` epochs (the default shuffle) against
    the raw loop over the same number of batches (fixed, unshuffled).
    """
    import keras
    import tensorflow as tf

    import contenders as c
    import tfp_nice as tn

    batch = 128
    x = tn.data.two_moons(8192, seed=0)
    batches = [tf.constant(x[i:i + batch]) for i in range(0, len(x), batch)]
    runs = {}
    for spe in spe_values:
        keras.utils.set_random_seed(0)
        model = tn.NICE((2,), num_couplings=4, hidden_units=(64, 64))
        model.compile(keras.optimizers.Adam(1e-3), steps_per_execution=spe)
        model.fit(x[:1024], epochs=1, batch_size=batch, verbose=0)
        runs[f"NICE.fit spe={spe}"] = (
            lambda m=model: m.fit(x, epochs=epochs, batch_size=batch, verbose=0))

    keras.utils.set_random_seed(0)
    model = tn.NICE((2,), num_couplings=4, hidden_units=(64, 64))
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x[:1024], epochs=1, batch_size=batch, verbose=0)
    raw = c.max_likelihood_loop(model.distribution, model.trainable_weights,
                                batches * epochs, jit=False)

    runs["raw tf.function loop"] = raw
    for run in runs.values():
        run()
    seconds = alternate(runs, rounds)
    return {"samples_per_s": {k: epochs * len(x) / t for k, t in seconds.items()}}


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def task_memory(kind, d, hidden, batch, steps):
    """Section 5: peak RSS of one contender training, in its own process."""
    import resource

    import tensorflow as tf

    import contenders as c

    x = _data(d, batch * steps)
    batches = [tf.constant(x[i * batch:(i + 1) * batch]) for i in range(steps)]
    before = _rss_mb()
    make = {"NICE.fit": lambda: c.nice_fit(x, d, hidden, batch, jit=False),
            "bare MLPs": lambda: c.bare_mlps(batches, d, hidden, jit=False),
            "RealNVP chain": lambda: c.tfp_real_nvp(batches, d, hidden, jit=False)}[kind]
    run = make()
    for _ in range(2):
        run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"peak_rss_mb": peak, "rss_before_model_mb": before}


def task_quality(arm, budget_s, batch, quick, patience=10, preset_kwargs=None, save=None,
                 jit_compile=False):
    """Section 7: held-out log-likelihood after each epoch of one arm, for `budget_s` s.

    The issue's protocol: the seed-0 split of the MNIST test set (8,000 to train, 2,000
    held out), fresh dequantization noise every epoch (`tn.dequantized_batches`), the
    held-out part dequantized once (seed 1). Every arm stops early the same way: 1,000
    of the 8,000 (seed 0) are a validation slice, dequantized once (seed 2), never
    trained on; `tn.AveragedEarlyStopping` stops `patience` epochs after the best
    validation figure and leaves the best weights in. One `fit` call runs until it
    stops or the seconds of training (evaluation not counted) pass the budget. The
    held-out figure after each epoch is the model's as `fit` would leave it then (an
    EMA recipe: its averaged weights); `final` is the model's as `fit` left it, saved
    to `save` (a `.keras` path) when given. `jit_compile` is Keras' (XLA).
    """
    import keras
    import numpy as np
    import tensorflow as tf

    import tfp_nice as tn
    from tfp_nice.data import MNIST_LEVELS, load_mnist, train_test_split

    if not MNIST.exists():
        return {"skipped": f"{MNIST} is absent"}
    images, _ = load_mnist(MNIST)
    images = images.reshape(len(images), -1)
    if quick:
        images = images[:1000]
    keras.utils.set_random_seed(0)
    name, kwargs = QUALITY_ARMS[arm]
    preset = getattr(tn.presets, name)(seed=0, **{**kwargs, **(preset_kwargs or {})})
    train, held = train_test_split(images, test_fraction=0.2, seed=0)
    train = train.reshape((len(train),) + preset.model.event_shape)  # flat, or images
    held = tf.constant(preset.preprocess(held, seed=1))
    train, validation = train_test_split(train, test_fraction=0.125, seed=0)
    stop = tn.AveragedEarlyStopping(preset.preprocess(validation, seed=2), patience)
    model = preset.model
    model.compile(preset.optimizer, jit_compile=jit_compile)
    mean_log_prob = tf.function(lambda: tf.reduce_mean(model.log_prob(held)))
    curve = []

    class Budget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.trained = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.trained += time.perf_counter() - self.start
            with tn.averaged_weights(model):  # what fit would leave (an EMA: the averages)
                nats = float(mean_log_prob())
            curve.append((epoch + 1, round(self.trained, 1), round(nats, 2)))
            if self.trained >= budget_s or not np.isfinite(nats):
                model.stop_training = True

    budget = Budget()
    model.fit(tn.dequantized_batches(train, MNIST_LEVELS, batch, seed=0), epochs=10**6,
              verbose=0, callbacks=[stop, budget])
    final = {"epoch": len(curve), "seconds": round(budget.trained, 1),
             "nats": round(float(mean_log_prob()), 2),
             "stopped_early": stop.stopped_epoch > 0,
             "best_validation_epoch": None if stop.best_epoch is None else stop.best_epoch + 1}
    if save:
        model.save(save)
    return {"curve": curve, "final": final, "train_images": len(train),
            "validation_images": len(validation), "held_out_images": len(held),
            "patience": patience}


def task_image(steps_per_scale, batch, steps, rounds):
    """Section 8: training samples/s of the multi-scale image flows, and the conv rate."""
    import tensorflow as tf

    import image_contenders as c

    x = c.image_batches(batch, steps)
    batches = [tf.constant(x[i * batch:(i + 1) * batch]) for i in range(steps)]
    runs = {"tn.Flow.fit": c.tfp_nice_fit(x, steps_per_scale, batch),
            "tn.Flow.fit, jit_compile=True": c.tfp_nice_fit(x, steps_per_scale, batch, True),
            "tn.Flow, raw step": c.tfp_nice_raw(batches, steps_per_scale),
            "TFP tfb.Glow, raw step": c.tfp_glow(batches, steps_per_scale)}
    skipped = {}
    why = c.normflows_available()
    if why is None:
        runs["normflows Glow (PyTorch)"] = c.normflows_glow([b.numpy() for b in batches],
                                                             steps_per_scale)
    else:
        skipped["normflows Glow (PyTorch)"] = why
    for run in runs.values():  # one more warm-up round
        run()
    seconds = alternate(runs, rounds)
    return {"samples_per_s": {k: batch * steps / t for k, t in seconds.items()},
            "skipped": skipped, "conv_gflops": c.conv_gflops(rounds),
            "steps_per_scale": steps_per_scale, "batch": batch}


def task_image_conv(rounds=7):
    """The machine's 3x3 convolution rate alone (`image_contenders.conv_gflops`)."""
    import image_contenders as c

    return {"conv_gflops": c.conv_gflops(rounds)}


def task_maf(d, hidden, steps, batch, n_batches, rounds, torch=True):
    """Section 9: a MAF's training samples/s, its density per second and an IAF's samples
    per second, tfp_nice beside TFP's (tf_keras network), nflows' and zuko's."""
    import tensorflow as tf

    import ar_contenders as c

    x = _data(d, batch * n_batches) * 2 - 1
    batches = [tf.constant(x[i * batch:(i + 1) * batch]) for i in range(n_batches)]
    spe = min(20, n_batches)
    train = {"tn.Flow.fit": c.tn_fit(x, d, hidden, steps, batch),
             f"tn.Flow.fit, steps_per_execution={spe}": c.tn_fit(x, d, hidden, steps, batch,
                                                                 steps_per_execution=spe),
             "tn flow, raw step": c.tn_raw_step(batches, d, hidden, steps),
             "TFP MAF, raw step": c.tfp_train(batches, d, hidden, steps)}
    maf, tfp_maf = c.tn_maf(d, hidden, steps), c.tfp_flow(d, hidden, steps)
    iaf = c.tn_maf(d, hidden, steps, inverse=True)
    tfp_iaf = c.tfp_flow(d, hidden, steps, inverse=True)
    xb = batches[0]
    ours_density, tfp_density = tf.function(maf.log_prob), tf.function(tfp_maf.log_prob)
    ours_sample = tf.function(lambda: iaf.sample(batch, seed=0))
    tfp_sample = tf.function(lambda: tfp_iaf.sample(batch, seed=0))
    density = {"tfp_nice MAF": lambda: ours_density(xb).numpy(),
               "TFP MAF": lambda: tfp_density(xb).numpy()}
    sampling = {"tfp_nice IAF": lambda: ours_sample().numpy(),
                "TFP IAF": lambda: tfp_sample().numpy()}
    skipped = {}
    if torch:
        why = c.torch_available()
        if why is None:
            import torch as th

            flows = {"nflows MAF": c.nflows_maf(d, hidden, steps),
                     "zuko MAF": c.zuko_maf(d, hidden, steps)}
            log_probs = {"nflows MAF": flows["nflows MAF"].log_prob,
                         "zuko MAF": lambda t: flows["zuko MAF"]().log_prob(t)}
            numpy_batches = [b.numpy() for b in batches]
            tb = th.from_numpy(numpy_batches[0])
            for name, flow in flows.items():
                train[name + ", raw step"] = c.torch_train(flow, log_probs[name],
                                                           numpy_batches)

                def torch_density(lp=log_probs[name]):
                    with th.no_grad():
                        lp(tb).numpy()
                density[name] = torch_density
        else:
            skipped["nflows, zuko"] = why

    def repeated(run, calls=5):
        def go():
            for _ in range(calls):
                run()
        return go

    for group in (train, density, sampling):
        for run in group.values():
            run()
    seconds = alternate(train, rounds)
    dens = alternate({k: repeated(v) for k, v in density.items()}, rounds)
    samp = alternate({k: repeated(v) for k, v in sampling.items()}, rounds)
    return {"train_samples_per_s": {k: batch * n_batches / t for k, t in seconds.items()},
            "density_per_s": {k: 5 * batch / t for k, t in dens.items()},
            "iaf_samples_per_s": {k: 5 * batch / t for k, t in samp.items()},
            "fit_gflops": c.made_flops(d, hidden, batch, steps) * n_batches
            / seconds["tn.Flow.fit"] / 1e9,
            "matmul_gflops": matmul_gflops(512, rounds), "skipped": skipped,
            "d": d, "hidden": hidden, "steps": steps, "batch": batch}


TASKS = {"train": task_train, "maf": task_maf, "serve": task_serve, "small": task_small,
         "memory": task_memory, "quality": task_quality, "image": task_image,
         "image_conv": task_image_conv}


def worker(spec):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(HERE))
    task = json.loads(spec)
    code = task.pop("code", None)
    if code:  # an older checkout's tfp_nice, found before the installed one
        sys.path.insert(0, code)
    result = TASKS[task.pop("task")](**task)
    if "tfp_nice" in sys.modules:  # which code was measured
        result["tfp_nice_code"] = os.path.dirname(sys.modules["tfp_nice"].__file__)
    print("RESULT " + json.dumps(result), flush=True)
