"""The recipe of `presets.glow_mnist()`, one axis at a time, at section 7's protocol.

    python benchmarks/glow_recipe.py --json benchmarks/results-glow-recipe.json

Each arm changes one thing from the preset's defaults (8 Glow steps per scale,
64-channel networks, batch 64, Adam 2e-3, weights averaged, no warm-up, early
stopping with a patience of 10 epochs) and trains for `--budget` seconds in a fresh
process, one arm at a time, through section 7's worker (`workers.py`'s `task_quality`: the
same split, dequantization and held-out slice). It prints a table of held-out nats and
bits/dim after the last epoch that ended within 1 minute, 2 minutes and the budget, with
the machine's 3x3 convolution rate; the curves go to `--json`. One run per arm: the
differences it can resolve are those larger than the run-to-run spread the table's
baseline rows show (run the baseline twice with `--repeat-baseline`).
"""
import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sections as bench  # noqa: E402  (the worker and the tables live there)
from workers import MNIST  # noqa: E402

# (label, batch, preset_kwargs, jit_compile): one change from the defaults each
ARMS = [
    ("defaults", 64, {}, False),
    ("warm-up over 200 batches", 64, {"warmup_steps": 200}, False),
    ("no weight averaging", 64, {"use_ema": False}, False),
    ("batch 32", 32, {}, False),
    ("batch 128", 128, {}, False),
    ("32-channel networks", 64, {"hidden_channels": 32}, False),
    ("96-channel networks", 64, {"hidden_channels": 96}, False),
    ("XLA (compile(jit_compile=True))", 64, {}, True),
]
DIMS = 28 * 28


def bits_per_dim(nats):
    import math
    # held-out nats are log p of images in [0, 256) levels scaled to [0, 1): bits/dim of
    # the 8-bit images adds log2(256) per dimension
    return -nats / (DIMS * math.log(2)) + 8.0


def at(curve, seconds):
    """(epoch, seconds, nats) of the last epoch that ended within `seconds`, or None."""
    within = [c for c in curve if c[1] <= seconds]
    return within[-1] if within else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180.0, help="seconds of training")
    parser.add_argument("--arms", default=None,
                        help="comma-separated indices into the arm list (default: all)")
    parser.add_argument("--repeat-baseline", action="store_true",
                        help="run the defaults again at the end (the run-to-run spread)")
    parser.add_argument("--json", default=None, help="where to write the curves")
    args = parser.parse_args(argv)
    if not MNIST.exists():
        print(f"{MNIST} is absent: nothing to measure")
        return 0
    arms = ARMS if args.arms is None else [ARMS[int(i)] for i in args.arms.split(",")]
    if args.repeat_baseline:
        arms = arms + [("defaults, again", 64, {}, False)]
    start = time.time()
    conv = bench.run_worker(task="image_conv")
    results = []
    for label, batch, kwargs, jit in arms:
        print(f"== {label}", flush=True)
        r = bench.run_worker(task="quality", arm="glow_mnist()", budget_s=args.budget,
                             batch=batch, quick=False, patience=10, preset_kwargs=kwargs,
                             jit_compile=jit)
        if "skipped" in r:
            print(r["skipped"])
            return 0
        results.append({"arm": label, "batch": batch, "preset_kwargs": kwargs,
                        "jit_compile": jit, **r})
        print(f"   {r['final']}", flush=True)
    rows = []
    for r in results:
        cells = [r["arm"]]
        for seconds in (60, 120, args.budget):
            point = at(r["curve"], seconds)
            cells.append("-" if point is None else
                         f"{point[2]:.0f} ({point[1]:.0f} s, {bits_per_dim(point[2]):.2f})")
        cells.append(str(r["final"]["epoch"]))
        rows.append(cells)
    header = ("arm", "1 min: nats (s, bits/dim)", "2 min", f"{args.budget:.0f} s", "epochs")
    m = bench.machine()
    print(f"\nMachine: {m['cpus']} CPUs ({m['cpu']}), {m['platform']}, "
          + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
          + f"; 3x3 convolution 64 -> 64 at 14x14, batch 64: {conv['conv_gflops']:.1f} GFLOP/s;"
          f" {time.time() - start:.0f} s in all\n")
    print(bench.table(header, rows))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"budget_s": args.budget, "conv_gflops": conv["conv_gflops"], "machine": m,
             "command": "python " + " ".join(sys.argv), "arms": results}, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
