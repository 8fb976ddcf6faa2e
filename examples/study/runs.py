"""The data, one training run and its cache: a run is trained once, kept as JSON (and
arrays) under the cache keyed by everything that defines it, and read back after."""

import hashlib
import json
import math
import time

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score
from study.settings import MNIST_DIR

import tfp_nice as tn
from tfp_nice.data import (
    DIGITS_LEVELS,
    MNIST_LEVELS,
    checkerboard,
    eight_gaussians,
    load_digits,
    load_mnist,
    train_test_split,
    two_moons,
)
from tfp_nice.steps import walk

# ---- data -----------------------------------------------------------------------------

def toy_data(name, n, seed):
    if name == "moons":
        return two_moons(n, seed=seed)
    if name == "checker":
        return checkerboard(n, seed=seed)
    x = eight_gaussians(n, seed=seed)
    return x * np.float32([100.0, 1.0]) if name == "stretched" else x


_CACHE = {}


def image_data(name, cfg):
    """`(train_uint, train_labels, test_float, test_labels, levels, image_shape)`."""
    if name not in _CACHE:
        if name == "digits":
            x, y = load_digits()
            levels, shape = DIGITS_LEVELS, (8, 8)
        else:
            x, y = load_mnist(MNIST_DIR / "t10k-images-idx3-ubyte.gz",
                              MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
            x, levels, shape = x.reshape(len(x), -1), MNIST_LEVELS, (28, 28)
        train_idx, test_idx = train_test_split(np.arange(len(x)), 0.2, seed=0)
        if name == "mnist":
            train_idx = train_idx[: cfg["mnist_train"]]
            test_idx = test_idx[: max(cfg["mnist_train"] // 4, 100)]
        rng = np.random.default_rng(12345)  # one fixed dequantization of the held-out part
        test = ((x[test_idx] + rng.uniform(size=x[test_idx].shape)) / levels).astype("float32")
        _CACHE[name] = (x[train_idx], y[train_idx], test, y[test_idx], levels, shape)
    return _CACHE[name]


# ---- one training run -----------------------------------------------------------------

def training_seconds(epoch_seconds):
    """Seconds of training after each epoch, the first epoch's one-off graph tracing left
    out: the first epoch counts as long as the median later one (as the first alone, when
    it is the only one)."""
    if len(epoch_seconds) < 2:
        return list(np.cumsum(epoch_seconds))
    first = float(np.median(epoch_seconds[1:]))
    return list(np.cumsum([min(first, epoch_seconds[0])] + list(epoch_seconds[1:])))


class Watch(keras.callbacks.Callback):
    """Held-out score after every epoch, and the seconds of training of each epoch; with
    `budget`, training stops after the epoch that brings the seconds of training
    (evaluation and the first epoch's tracing not counted, `training_seconds`) to the
    budget, and not before two epochs."""

    def __init__(self, score, budget=None):
        super().__init__()
        self.score, self.budget, self.curve, self.epoch_seconds = score, budget, [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._start)
        with tn.averaged_weights(self.model):  # an EMA recipe: what fit would leave now
            self.curve.append(self.score(self.model))
        if self.budget is not None and (not np.isfinite(self.curve[-1]) or (
                len(self.epoch_seconds) >= 2
                and training_seconds(self.epoch_seconds)[-1] >= self.budget)):
            self.model.stop_training = True


class NotCached(Exception):
    """A section's run is not in the cache, and this invocation does not train it."""


ONLY_CACHED = False  # set while a section that was not asked for is read from the cache
USED = []  # the runs the report is built from


def per_call_seconds(fn, calls=3):
    """The median seconds of a call to `fn` (a `tf.function`), after one call to trace it."""
    fn()
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), fn())
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))


def spec_key(spec):
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def run(spec, cache):
    """Trains the model `spec` describes (or reads it from the cache); returns its results."""
    key = spec_key(spec)
    path = cache / f"{key}.json"
    if path.is_file():
        result = json.loads(path.read_text())
        USED.append(result)
        return result
    if ONLY_CACHED:
        raise NotCached(key)
    start = time.perf_counter()
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec["seed"])
    arch = dict(spec["arch"])
    init, init_value = spec.get("init", ("data", None))
    if spec["data"] in ("digits", "mnist"):
        train, train_y, test, test_y, levels, shape = image_data(spec["data"], spec["cfg"])
        if "hold_out" in spec:  # question 2: one class left out of training
            train = train[train_y != spec["hold_out"]]
        # fresh uniform noise every epoch: (x + u) / levels, reshuffled
        fit_data = tn.dequantized_batches(train, levels, spec["batch"], seed=spec["seed"])
        event, num_levels = (train.shape[1],), levels
    else:
        train = toy_data(spec["data"], spec["cfg"]["toy_train"], 1000 + spec["seed"])
        test = toy_data(spec["data"], spec["cfg"]["toy_test"], 2000 + spec["seed"])
        fit_data, event, num_levels = train, (2,), None
    builder = spec.get("builder", "nice")
    optimizer = keras.optimizers.Adam(1e-3, beta_2=spec.get("beta_2", 0.999),
                                      epsilon=spec.get("epsilon", 1e-7))
    if builder == "preset":  # the library's recipe, its optimiser with it
        preset = getattr(tn.presets, spec["preset"])(seed=spec["seed"])
        model, optimizer = preset.model, preset.optimizer
    elif builder == "multiscale":  # glow_mnist's layout and optimiser, sized by the config
        side = shape[0]
        steps = tn.multiscale_steps((side, side, 1), num_scales=2,
                                    steps_per_scale=spec["glow_steps"],
                                    hidden_channels=(spec["glow_channels"],) * 2,
                                    coupling="affine", learned_prior=True, logit_alpha=0.05,
                                    rescaling=spec["ms_rescaling"], seed=spec["seed"])
        model = tn.Flow(steps, prior="normal", num_levels=num_levels, seed=spec["seed"])
        optimizer = keras.optimizers.Adam(2e-3, use_ema=True, ema_momentum=0.99)
    elif builder == "autoregressive":  # MAF or an autoregressive spline flow, 4 steps
        transformer = ("affine" if spec["transformer"] == "affine" else
                       tn.Spline(num_bins=spec["num_bins"], tail_bound=spec["tail_bound"]))
        steps = tn.autoregressive_steps(event, num_steps=4, transformer=transformer,
                                        hidden_units=tuple(spec["hidden"]),
                                        actnorm=spec.get("actnorm", False), partial=True,
                                        seed=spec["seed"])
        if spec.get("logit_alpha"):
            steps = [tn.LogitStep(event, alpha=spec["logit_alpha"])] + steps
        model = tn.Flow(steps, prior="normal", num_levels=num_levels, seed=spec["seed"])
    else:
        model = tn.NICE(event, num_couplings=4, hidden_units=tuple(spec["hidden"]),
                        num_levels=num_levels, rescaling_init=init, seed=spec["seed"], **arch)
    if tuple(model.event_shape) != tuple(event):  # an image flow: examples in their shape
        image = tuple(model.event_shape)
        test = test.reshape((len(test),) + image)
        fit_data = fit_data.map(lambda b: tf.reshape(b, (-1,) + image))
    if init_value is not None:
        rng = np.random.default_rng(spec["seed"])
        value = (rng.normal(0.0, 0.5, size=event) if init_value == "normal"
                 else np.full(event, init_value))
        model.log_scale.assign(value.astype("float32"))
    model.compile(optimizer, steps_per_execution=spec.get("steps_per_execution", 1),
                  jit_compile=spec.get("jit_compile", False))

    # One traced function over the held-out set: Keras's `predict` costs a fresh data
    # pipeline per call, more than a digits epoch of training.
    held_out = tf.constant(test)
    mean_log_prob = tf.function(lambda: tf.reduce_mean(model.log_prob(held_out)))

    def score(m):
        nll = -float(mean_log_prob())
        return float(m.bits_per_dim(nll)) if num_levels else -nll

    budget = spec.get("seconds")
    watch = Watch(score, budget)
    fit_kwargs = {} if spec["data"] in ("digits", "mnist") else {"batch_size": spec["batch"]}
    epochs = 10**6 if budget is not None else spec["epochs"]
    history = model.fit(fit_data, epochs=epochs, verbose=0, callbacks=[watch], **fit_kwargs)
    losses = history.history["loss"]
    curve = watch.curve
    # What the trained model costs to use (question 5): log_prob of held-out rows and
    # sampling, each one traced call, in milliseconds per 1,000 rows
    cost = {}
    if spec.get("cost_rows"):
        # the held-out set can be smaller than cost_rows (digits: 360 rows): each figure
        # is divided by the rows its call really handled
        scored = min(spec["cost_rows"], len(test))
        drawn = spec["cost_rows"]
        calls = {"density_ms_per_1000": (tf.function(lambda: model.log_prob(held_out[:scored])),
                                         scored),
                 "sampling_ms_per_1000": (tf.function(lambda: model.sample(drawn, seed=0)),
                                          drawn)}
        cost = {key: 1e6 * per_call_seconds(fn, spec["cost_calls"]) / rows
                for key, (fn, rows) in calls.items()}
    # Diverged: the loss or the held-out score stopped being finite (training stops), or the
    # held-out bits/dim blew up past twice a uniform model's (2 log2 levels).
    blew_up = bool(num_levels and curve and np.isfinite(curve[-1])
                   and curve[-1] > 2 * math.log2(num_levels))
    result = {
        "spec": spec, "curve": curve, "final": curve[-1] if curve else None,
        "epoch_seconds": float(np.median(watch.epoch_seconds)) if watch.epoch_seconds else None,
        "seconds": [float(t) for t in training_seconds(watch.epoch_seconds)],
        # the first epoch's time beyond a later one's: tracing and building the graphs
        "trace_seconds": (float(watch.epoch_seconds[0] - np.median(watch.epoch_seconds[1:]))
                          if len(watch.epoch_seconds) > 1 else None),
        "params": int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        "diverged": bool((budget is None and len(losses) < spec["epochs"])
                         or not np.all(np.isfinite(losses))
                         or not np.all(np.isfinite(curve)) or blew_up),
        "wall_seconds": time.perf_counter() - start,
        **cost,
    }
    arrays = {}
    if spec.get("density_grid"):
        lo, hi = np.percentile(test, 0.5, axis=0), np.percentile(test, 99.5, axis=0)
        pad = 0.15 * (hi - lo)
        g = spec["cfg"]["grid"]
        xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], g)
        ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], g)
        grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype("float32")
        arrays["density"] = np.exp(model.predict(grid, batch_size=4096, verbose=0)).reshape(g, g)
        arrays["extent"] = np.array([xs[0], xs[-1], ys[0], ys[-1]])
    if "hold_out" in spec:
        scores = -model.predict(test, batch_size=1000, verbose=0)
        anomalous = test_y == spec["hold_out"]
        finite = np.isfinite(scores)
        result["auc"] = (float(roc_auc_score(anomalous[finite], scores[finite]))
                         if finite.all() else None)
    if spec.get("keep_scales"):  # a multi-scale flow's per-channel rescalings, by scale
        for step in walk(model.steps):
            if isinstance(step, tn.RescalingStep):
                arrays[f"scales_{step.name}"] = np.asarray(step.log_scale)
    if spec.get("keep_model"):
        arrays["log_scale"] = np.asarray(model.log_scale)
        for t in (0.5, 0.8, 1.0):
            arrays[f"samples_{t}"] = model.sample(16, temperature=t, seed=spec["seed"]).numpy()
        arrays["data"] = test[:16]
    if arrays:
        np.savez(cache / f"{key}.npz", **arrays)
    result["arrays"] = bool(arrays)
    path.write_text(json.dumps(result))
    USED.append(result)
    print(f"  {spec['data']:<10} {spec['label']:<28} seed {spec['seed']}: "
          f"final {result['final']!s:.8} in {result['wall_seconds']:.0f} s", flush=True)
    return result


def arrays_of(result, cache):
    return np.load(cache / f"{spec_key(result['spec'])}.npz")


def base_spec(cfg, data, label, arch, seed, **extra):
    image = data in ("digits", "mnist")
    spec = {"data": data, "label": label, "arch": arch, "seed": seed,
            "hidden": cfg["mnist_hidden" if data == "mnist" else
                          ("digits_hidden" if image else "toy_hidden")],
            "epochs": cfg["mnist_epochs" if data == "mnist" else
                          ("digits_epochs" if image else "toy_epochs")],
            "batch": 256 if data != "digits" else 64,
            # 8 training steps per call into the graph: the same steps, less of Keras's
            # per-step overhead (a digits epoch: 0.135 s -> 0.056 s)
            "steps_per_execution": 8,
            "cfg": {k: cfg[k] for k in ("toy_train", "toy_test", "grid", "mnist_train")}}
    if data == "mnist":  # the paper's optimiser, as Keras reads it (tn.presets.nice_mnist)
        spec.update(beta_2=0.99, epsilon=1e-4)
    spec.update(extra)
    return spec
