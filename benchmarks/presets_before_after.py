"""The MNIST presets before and after a change, in one invocation: `affine_mnist()` and
`glow_mnist()` trained for the same seconds on this checkout and on an older one, in
alternation, each in a fresh worker (section 7's protocol, `workers.task_quality`).

    git worktree add /tmp/before <rev>
    python benchmarks/presets_before_after.py /tmp/before [--seconds 180]
"""
import argparse
import pathlib
import sys

from sections import run_worker, table
from workers import MNIST, QUALITY_BATCH


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", help="a checkout of older code (git worktree add DIR REV)")
    parser.add_argument("--seconds", type=float, default=180.0,
                        help="seconds of training per run (default: 180)")
    args = parser.parse_args(argv)
    baseline = pathlib.Path(args.baseline).resolve()
    if not (baseline / "tfp_nice" / "__init__.py").is_file():
        parser.error(f"{args.baseline} holds no tfp_nice package")
    if not MNIST.exists():
        sys.exit(f"{MNIST} is absent: the presets train on the MNIST split")
    rows = []
    for arm in ("affine_mnist()", "glow_mnist()"):
        runs = {}
        for side, code in (("after", None), ("before", str(baseline))):
            r = run_worker(task="quality", arm=arm, budget_s=args.seconds,
                           batch=QUALITY_BATCH.get(arm, 256), quick=False, code=code)
            runs[side] = r["final"]
            print(f"{arm} {side}: {r['final']}", file=sys.stderr, flush=True)
        b, a = runs["before"], runs["after"]
        rows.append((arm, b["epoch"], a["epoch"], f"{b['nats']:.1f}", f"{a['nats']:.1f}",
                     f"{a['nats'] - b['nats']:+.1f}"))
    print(f"Held-out log-likelihood (nats per image, higher is better) after {args.seconds:g} "
          f"s of training; before: `{baseline}`, after: this checkout.\n")
    print(table(("preset", "epochs before", "epochs after", "before", "after",
                 "after - before"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
