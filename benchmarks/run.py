"""Benchmarks: tfp_nice against TFP's RealNVP chain and Glow, nflows, normflows' Glow and a
bare-MLP compute limit.

    python benchmarks/run.py [--quick] [--json PATH] [--sections 1,3,...] [--baseline DIR]

Nine sections (see benchmarks/README.md). Each comparison runs in a fresh worker
process of this same invocation (so an earlier section's graphs, threads and
allocations cannot slow a later one); inside a worker the contenders alternate
round by round after a warm-up, and the table gives the median of the rounds and
the ratios. Peak memory needs one process per contender, and time to quality
runs its two contenders one after the other. Speed lives here, never in the tests.
"""
import argparse
import json
import pathlib
import sys
import time

from sections import SECTIONS, machine
from workers import PAPER_HIDDEN, worker


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few rounds: checks that everything runs")
    parser.add_argument("--json", default=None, help="write every number here")
    parser.add_argument("--sections", default="1,3,4,5,6,7,8,9",
                        help="comma-separated section numbers (2 comes with 1)")
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="a checkout of older code (git worktree add DIR REV): sections 1, "
                             "3 and 8 also run on it, in this invocation, before and after")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    try:
        wanted = [int(s) for s in args.sections.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sections takes comma-separated numbers, got {args.sections!r}")
    unknown = [s for s in wanted if s not in SECTIONS and s != 2]
    if unknown:
        parser.error(f"no section {unknown}; sections are 1-9 (2 comes with 1)")
    if args.quick:
        cfg = {"d": 64, "hidden": [64, 64], "steps": 3, "rounds": 2, "spe": [1, 8],
               "scaling": [(16, 64), (64, 256)], "scaling_rounds": 2, "serve_batches": [1, 32],
               "quality_budget": 2, "quality_budgets": [1, 2], "quality_patience": 2,
               "image_steps_per_scale": 1, "image_steps": 2, "quick": True,
               "maf_sizes": [(10, 50, 2)], "maf_batch": 64}
    else:
        cfg = {"d": 784, "hidden": list(PAPER_HIDDEN), "steps": 20, "rounds": 7,
               "spe": [1, 16, 64], "scaling_rounds": 5, "serve_batches": [1, 32, 1024],
               "scaling": [(64, 256), (784, 256), (3072, 256), (784, 64), (784, 1024)],
               "quality_budget": 1800, "quality_budgets": [60, 180, 600, 1800],
               "quality_patience": 10, "image_steps_per_scale": 4, "image_steps": 10,
               "quick": False, "figure": True,
               "maf_sizes": [(10, 50, 200), (784, 512, 20)], "maf_batch": 256}
    if args.baseline:
        baseline = pathlib.Path(args.baseline).resolve()
        if not (baseline / "tfp_nice" / "__init__.py").is_file():
            parser.error(f"--baseline {args.baseline} holds no tfp_nice package")
        cfg["baseline"] = str(baseline)
    results = {"machine": machine(), "settings": cfg, "command": " ".join(
        ["python", "benchmarks/run.py"] + (argv if argv is not None else sys.argv[1:]))}
    report = []
    start = time.perf_counter()
    for number in sorted(set(s if s != 2 else 1 for s in wanted)):
        print(f"running section {number} ...", file=sys.stderr, flush=True)
        SECTIONS[number](cfg, results, report)
        report.append("")
    m = results["machine"]
    print(f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['platform']}, Python {m['python']}, "
          + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    print(f"Command: {results['command']}  ({time.perf_counter() - start:.0f} s)\n")
    print("\n".join(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
