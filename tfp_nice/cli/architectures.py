"""The architectures `tfp-nice train` builds: a table of builders, the keyword arguments
each run's flags give one, and the record of both that `metrics.json` keeps.

A builder is a plain function `builder(event_shape, **kwargs) -> (model, optimizer)`;
`BUILDERS` names them. A run's record is `{"builder": name, "kwargs": kwargs}` with the
keyword arguments verbatim, so `model_from_record` rebuilds the architecture (untrained)
from any `metrics.json`, including those written before records held the builder
(`"architecture"`, read by `read_record`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import keras

from tfp_nice.bijectors.spline_coupling import DEFAULT_BINS, DEFAULT_TAIL_BOUND
from tfp_nice.cli.inputs import InputError
from tfp_nice.models import NICE, Flow
from tfp_nice.steps import autoregressive_steps, multiscale_steps
from tfp_nice.transformers import Spline

__all__ = ["BUILDERS", "kwargs_from_args", "model_from_record", "read_record", "record"]


def nice(event_shape: Sequence[int], learning_rate: float = 1e-3,
         **kwargs: Any) -> tuple[keras.Model, keras.optimizers.Optimizer]:
    """`tfp_nice.NICE(event_shape, **kwargs)` and Adam at `learning_rate`."""
    return NICE(tuple(event_shape), **kwargs), keras.optimizers.Adam(learning_rate)


def multiscale(event_shape: Sequence[int], learning_rate: float = 1e-3, prior: str = "normal",
               num_levels: int | None = None, seed: int = 0,
               context_shape: Sequence[int] | None = None,
               **kwargs: Any) -> tuple[keras.Model, keras.optimizers.Optimizer]:
    """A `Flow` of `tfp_nice.multiscale_steps(event_shape, **kwargs)` and Adam."""
    steps = multiscale_steps(tuple(event_shape), seed=seed, context_shape=context_shape,
                             **kwargs)
    model = Flow(steps, prior=prior, num_levels=num_levels, seed=seed,
                 context_shape=context_shape, name="multiscale")
    return model, keras.optimizers.Adam(learning_rate)


def maf(event_shape: Sequence[int], learning_rate: float = 1e-3, prior: str = "normal",
        num_levels: int | None = None, seed: int = 0,
        context_shape: Sequence[int] | None = None, inverse: bool = False,
        **kwargs: Any) -> tuple[keras.Model, keras.optimizers.Optimizer]:
    """A `Flow` of `tfp_nice.autoregressive_steps(event_shape, **kwargs)` (MAF steps;
    IAF steps with `inverse=True`) and Adam; `num_bins` and `tail_bound` make the
    transformer `tfp_nice.Spline(num_bins, tail_bound)`."""
    name = "iaf" if inverse else "maf"
    spline = {k: kwargs.pop(k) for k in ("num_bins", "tail_bound") if k in kwargs}
    if spline:  # a spline transformer's options, as JSON records keep them
        kwargs["transformer"] = Spline(**spline)
    steps = autoregressive_steps(tuple(event_shape), inverse=inverse, seed=seed,
                                 context_shape=context_shape, name=name, **kwargs)
    model = Flow(steps, prior=prior, num_levels=num_levels, seed=seed,
                 context_shape=context_shape, name=name)
    return model, keras.optimizers.Adam(learning_rate)


def iaf(event_shape: Sequence[int], **kwargs: Any) -> tuple[keras.Model,
                                                            keras.optimizers.Optimizer]:
    """`maf(event_shape, inverse=True, **kwargs)`: IAF steps (sampling in one pass)."""
    return maf(event_shape, inverse=True, **kwargs)


def _preset(name: str) -> Callable[..., tuple[keras.Model, keras.optimizers.Optimizer]]:
    def build(event_shape: Sequence[int], **kwargs: Any):
        from tfp_nice import presets

        model, optimizer, _ = getattr(presets, name)(**kwargs)
        return model, optimizer

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"`tfp_nice.presets.{name}(**kwargs)`: its model and optimiser."
    return build


BUILDERS: dict[str, Callable[..., tuple[keras.Model, keras.optimizers.Optimizer]]] = {
    "nice": nice, "multiscale": multiscale, "maf": maf, "iaf": iaf,
    **{name: _preset(name) for name in ("affine_mnist", "glow_mnist", "nice_mnist")},
}


def record(builder: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What `metrics.json` keeps of a run's architecture: the builder's name and its
    keyword arguments, verbatim (JSON: tuples become lists)."""
    return {"builder": builder, "kwargs": dict(kwargs)}


def read_record(metrics: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`(builder, kwargs)` from a `metrics.json`, of this record format or of the one
    before it (an `"architecture"` of the NICE flags, of `"flow": "multiscale"`, or of a
    `"preset"`), or a `ValueError` naming what is missing."""
    if "builder" in metrics:
        held = metrics["builder"]
        return held["builder"], dict(held["kwargs"])
    arch = metrics.get("architecture")
    if not isinstance(arch, dict):
        raise ValueError("metrics.json holds no record of its architecture ('builder' or "
                         "'architecture').")
    common = {"num_levels": metrics.get("num_levels"), "seed": metrics["arguments"]["seed"]}
    classes = metrics.get("num_classes")
    if "preset" in arch:
        kwargs = {"seed": common["seed"]}
        if classes is not None:
            kwargs["num_classes"] = classes
        return arch["preset"], kwargs
    context = None if classes is None else [classes]
    args = metrics["arguments"]
    spline = {k: arch[k] for k in ("num_bins", "tail_bound") if k in arch}
    if arch.get("flow") == "multiscale":
        return "multiscale", {
            "num_scales": arch["scales"], "steps_per_scale": arch["steps_per_scale"],
            "hidden_channels": arch["hidden_channels"], "coupling": arch["coupling"],
            "prior": arch["prior"], "logit_alpha": arch["logit_alpha"], **spline,
            "context_shape": context, "learning_rate": args["learning_rate"], **common}
    return "nice", {
        "num_couplings": args["couplings"], "hidden_units": args["hidden"],
        "prior": args["prior"] or "logistic", "context_shape": context,
        "learning_rate": args["learning_rate"],
        **{k: arch[k] for k in ("partition", "coupling", "actnorm", "permutation",
                                "rescaling", "rescaling_init")}, **spline, **common}


def model_from_record(metrics: dict[str, Any]) -> tuple[keras.Model, keras.optimizers.Optimizer]:
    """The architecture and optimiser a `metrics.json` records, freshly built (untrained):
    to train it again, with another seed or on other data of its shape."""
    builder, kwargs = read_record(metrics)
    return BUILDERS[builder](tuple(metrics["event_shape"]), **kwargs)


# --- the flags of each builder ----------------------------------------------------------

# The flags a preset fixes, with the name the error message gives them.
_PRESET_FIXES = {"flow": "--flow", "steps": "--steps", "scales": "--scales",
                 "steps_per_scale": "--steps-per-scale",
                 "couplings": "--couplings", "hidden": "--hidden", "partition": "--partition",
                 "coupling": "--coupling", "num_bins": "--num-bins",
                 "tail_bound": "--tail-bound", "actnorm": "--actnorm",
                 "permutation": "--permutation", "rescaling_init": "--rescaling-init",
                 "prior": "--prior", "no_rescaling": "--no-rescaling",
                 "learning_rate": "--learning-rate"}
# The options of one --flow only.
_NICE_ONLY = {"couplings": "--couplings", "partition": "--partition", "actnorm": "--actnorm",
              "permutation": "--permutation", "rescaling_init": "--rescaling-init",
              "no_rescaling": "--no-rescaling"}
_MULTISCALE_ONLY = {"scales": "--scales", "steps_per_scale": "--steps-per-scale"}
_AUTOREGRESSIVE_ONLY = {"steps": "--steps"}


def _spline_options(args: Any, coupling: str) -> dict[str, Any]:
    """`--num-bins` and `--tail-bound` for a spline coupling; an error for another."""
    given = {key: getattr(args, key) for key in ("num_bins", "tail_bound")
             if key in args.typed}
    if coupling != "spline":
        if given:
            flags = ", ".join("--" + key.replace("_", "-") for key in given)
            raise InputError(f"{flags} shape spline couplings; add --coupling spline or drop "
                             "them.")
        return {}
    return {"num_bins": args.num_bins or DEFAULT_BINS,
            "tail_bound": args.tail_bound or DEFAULT_TAIL_BOUND}


def _refuse(args: Any, flags: dict[str, str], message: str) -> None:
    typed = [flag for key, flag in flags.items() if key in args.typed]
    if typed:
        raise InputError(message.format(", ".join(typed)))


def kwargs_from_args(args: Any, dataset: Any,
                     num_classes: int | None) -> tuple[str, dict[str, Any]]:
    """The builder `train`'s flags choose and its keyword arguments, or an `InputError`
    naming a flag that does not belong (a preset's fixed ones, another flow's)."""
    context = None if num_classes is None else [num_classes]
    common = {"num_levels": dataset.num_levels, "seed": args.seed}
    if args.preset:
        # Refused when typed, whatever the value: a value equal to the default is still
        # the user's request, and the preset would silently override it.
        _refuse(args, _PRESET_FIXES, f"--preset {args.preset} sets the model and optimiser; "
                                     "drop {}.")
        kwargs: dict[str, Any] = {"seed": args.seed}
        if num_classes is not None:
            if args.preset == "nice_mnist":
                raise InputError("--preset nice_mnist is NICE's unconditional model; for "
                                 "--labels use affine_mnist or glow_mnist.")
            kwargs["num_classes"] = num_classes
        return args.preset, kwargs
    if args.flow in ("maf", "iaf"):
        _refuse(args, {**_MULTISCALE_ONLY, **{k: v for k, v in _NICE_ONLY.items()
                                              if k != "actnorm"}},
                f"--flow {args.flow} builds autoregressive steps over the flattened examples: "
                "drop {} (its options are --steps, --hidden, --coupling, --actnorm and "
                "--prior).")
        coupling = args.coupling or "affine"
        spline = _spline_options(args, coupling)
        return args.flow, {
            "num_steps": args.steps, "hidden_units": list(args.hidden),
            "transformer": coupling, **spline, "actnorm": args.actnorm,
            "prior": args.prior or "normal", "context_shape": context,
            "learning_rate": args.learning_rate, **common}
    if args.flow == "multiscale":
        _refuse(args, {**_NICE_ONLY, **_AUTOREGRESSIVE_ONLY},
                "--flow multiscale builds its own steps: drop {} (its options are --scales, "
                "--steps-per-scale, --hidden, --coupling and --prior).")
        coupling = args.coupling or "affine"
        # Discrete data arrive dequantized into [0, 1): the logit step spreads them out.
        logit = 0.05 if dataset.num_levels is not None else None
        return "multiscale", {
            "num_scales": args.scales, "steps_per_scale": args.steps_per_scale,
            "hidden_channels": list(args.hidden), "coupling": coupling,
            "prior": args.prior or "normal", "logit_alpha": logit,
            **_spline_options(args, coupling), "context_shape": context,
            "learning_rate": args.learning_rate, **common}
    _refuse(args, _MULTISCALE_ONLY, "--flow nice does not take {} (options of --flow "
                                    "multiscale).")
    _refuse(args, _AUTOREGRESSIVE_ONLY, "--flow nice does not take {} (an option of --flow "
                                        "maf and iaf; NICE's is --couplings).")
    coupling = args.coupling or "additive"
    return "nice", {
        "num_couplings": args.couplings, "hidden_units": list(args.hidden),
        "prior": args.prior or "logistic", "context_shape": context,
        "partition": args.partition, "coupling": coupling, "actnorm": args.actnorm,
        "permutation": None if args.permutation == "none" else args.permutation,
        "rescaling": not args.no_rescaling, "rescaling_init": args.rescaling_init,
        **_spline_options(args, coupling), "learning_rate": args.learning_rate, **common}
