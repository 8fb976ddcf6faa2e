"""The rescaling study: what NICE's diagonal rescaling buys, over seeds, with figures.

    python examples/rescaling_study.py                        # full run, about 2 hours on 2
                                                              # cores at 67 GFLOP/s (37 minutes
                                                              # of it the MNIST autoregressive
                                                              # spline arm, mostly its sampling)
    python examples/rescaling_study.py --sections q1,q4       # some sections; the rest resume
    TFP_NICE_QUICK=1 python examples/rescaling_study.py       # tiny settings: every figure and
                                                              # table is produced (CI)

Writes `rescaling-study.md` and its PNG figures into `--out` (`docs/` for the full run,
`runs/rescaling-study-quick/` in quick mode). Each training run is cached as JSON (and
arrays) under `--cache`, keyed by everything that defines it, so an interrupted study
resumes where it stopped and a rerun only writes the report again.

The questions (see the report for the answers):
  Q1  What does the rescaling change in what NICE can represent (2-D multimodal data, and
      data whose dimensions have very different scales)?
  Q2  Where does a non-volume-preserving flow pay off (likelihood-based anomaly detection)?
  Q3  NICE with and without rescaling on digits and the MNIST split, with confidence intervals.
  Q4  Initialisations of the log-scales and Adam's beta_2: convergence and divergence.
  Q5  What adds expressiveness cheaply: at equal seconds of training, NICE against affine
      and spline couplings, ActNorm and LU maps, and on MNIST the multi-scale convolutional
      flow (with and without NICE's per-channel rescaling)?
  What the rescaling learns: the learned scales of an MNIST model, and its samples.

MNIST is the 10,000-image test split in `../shared/data/mnist` (8,000 to train, 2,000 held
out); its sections are skipped, and say so, where the files are absent.

This file is the command and the report; the study itself is in `examples/study/`, one
module per part: `settings` (sizes and arms), `runs` (the data, one training run and its
cache), `stats`, a module per group of questions (`density`: Q1-Q2, `training`: Q3-Q4,
`equal_time`: Q5, `learned`) and `answers` (the report's answers).
"""

import argparse
import json
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_probability as tfp  # noqa: E402
from study import runs  # noqa: E402
from study.answers import answers  # noqa: E402
from study.density import section_q1, section_q2  # noqa: E402
from study.equal_time import section_q5  # noqa: E402
from study.learned import section_learned  # noqa: E402
from study.runs import NotCached, Watch, base_spec, spec_key, training_seconds  # noqa: E402, F401
from study.settings import FULL, NVP, QUICK, SECTIONS, VP  # noqa: E402, F401
from study.stats import fmt, summary, table  # noqa: E402, F401
from study.training import section_q3, section_q4  # noqa: E402

import tfp_nice as tn  # noqa: E402


SECTION_FUNCTIONS = {"q1": section_q1, "q2": section_q2, "q3": section_q3, "q4": section_q4,
                     "q5": section_q5, "learned": section_learned}
FIGURES = {"q1": ["study-q1-densities.png"], "q2": ["study-q2-anomaly.png"],
           "q3": ["study-q3-with-without.png"], "q4": ["study-q4-inits.png"],
           "q5": ["study-q5-time.png"],
           "learned": ["study-learned-scales.png", "study-samples.png"]}


def machine():
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    a = tf.random.normal((2048, 2048))
    tf.matmul(a, a).numpy()
    start = time.perf_counter()
    for _ in range(5):
        tf.matmul(a, a).numpy()
    gflops = 5 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9
    return {"cpus": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
            "python": platform.python_version(), "matmul_gflops": round(gflops),
            "versions": {"tfp_nice": tn.__version__, "tensorflow": tf.__version__,
                         "tensorflow_probability": tfp.__version__,
                         "keras": keras.__version__, "numpy": np.__version__}}


def main(argv=None):
    quick = os.environ.get("TFP_NICE_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--out", default="runs/rescaling-study-quick" if quick else "docs",
                        help="where rescaling-study.md and its figures go")
    parser.add_argument("--cache", default=None,
                        help="where each run is kept (default: runs/rescaling-study-cache, "
                             "or -quick in quick mode)")
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose among {', '.join(SECTIONS)}")
    cfg = QUICK if quick else FULL
    out = pathlib.Path(args.out)
    cache = pathlib.Path(args.cache or ("runs/rescaling-study-cache" + ("-quick" if quick else "")))
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    texts, numbers, not_run = {}, {}, []
    for name in SECTIONS:  # the report's order; the others are read from the cache if there
        runs.ONLY_CACHED = name not in wanted
        if not runs.ONLY_CACHED:
            print(f"section {name} ...", flush=True)
        try:
            texts[name], found = SECTION_FUNCTIONS[name](cfg, cache, out)
            numbers.update(found)
        except NotCached:
            not_run.append(name)
    runs.ONLY_CACHED = False
    m = machine()
    used = list({spec_key(r["spec"]): r for r in runs.USED}.values())
    command = "TFP_NICE_QUICK=1 " * quick + "python examples/rescaling_study.py" + (
        f" --sections {args.sections}" if set(wanted) != set(SECTIONS) else "")
    report = [
        "# The rescaling study", "",
        "NICE's diagonal rescaling layer `h = exp(s) * h'` (log-det `sum(s)`) is what turns "
        "its volume-preserving additive couplings into a flow that can spend volume where the "
        "data are. This study answers the questions it raises with several seeds per number "
        "(mean ± standard deviation, and the 95% t-interval's half-width; one seed in quick "
        "mode).", "",
        f"Reproduce: `{command}` (every run is cached under `{cache}`, so an interrupted run "
        "resumes). The machine, measured as this report was written: "
        f"{m['cpus']} CPUs ({m['cpu']}), matmul {m['matmul_gflops']} GFLOP/s, "
        f"{m['platform']}, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        + f"; {len(used)} training runs, {sum(r['wall_seconds'] for r in used) / 60:.1f} "
        f"minutes of training and evaluation in all ({time.perf_counter() - start:.0f} s in "
        "this invocation).", ""]
    report += answers(numbers, cfg)
    for name in SECTIONS:
        if name in texts:
            report += texts[name] + [""]
    if not_run:
        report += [f"Not run yet: {', '.join(not_run)} (`python examples/rescaling_study.py "
                   f"--sections {','.join(not_run)}`).", ""]
    arms = {}
    for r in used:
        arms.setdefault((r["spec"]["data"], r["spec"]["label"]), []).append(r["wall_seconds"])
    report += ["## Wall time of each arm",
               "Seconds per run (training, per-epoch evaluation and any figures' arrays), mean "
               "over the arm's runs.", "",
               table(["data", "arm", "runs", "seconds per run"],
                     [[d, label, len(v), f"{np.mean(v):.1f}"]
                      for (d, label), v in sorted(arms.items())])]
    (out / "rescaling-study.md").write_text("\n".join(report) + "\n")
    (out / "rescaling-study.json").write_text(json.dumps(
        {"machine": m, "settings": cfg, "command": command, "numbers": numbers}, indent=1) + "\n")

    if not_run and set(not_run) & set(wanted):
        sys.exit(f"sections {not_run} did not run")
    missing = [f for name in texts for f in FIGURES[name] if not (out / f).is_file()]
    tables = sum(line.startswith("| ---") or line.startswith("|---")
                 for line in (out / "rescaling-study.md").read_text().splitlines())
    if missing or tables < len(texts):
        sys.exit(f"the study is incomplete: missing figures {missing}, {tables} tables")
    print(f"wrote {out / 'rescaling-study.md'} with {tables} tables and "
          f"{sum(len(FIGURES[n]) for n in texts)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
