"""The digits model's `log_prob` at batch 1024, older code against this checkout's, interleaved.

Section 3 of `run.py` times each checkout in its own process, minutes apart; on
these shared machines that left differences of 50% between runs of the same code.
Here two processes, one per checkout, each build the digits-sized NICE (D=64, 4
couplings of 64-64, started from data), export it and load the SavedModel, then
take turns: each round times 20 calls in one process, then 20 in the other (the
order flips every round), in-process `tf.function(model.log_prob)` and the
served signature. What drifts during the run drifts for both.

    python benchmarks/serve_interleaved.py --baseline /path/to/older/checkout --rounds 60
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CALLS = 20


def worker(code):
    if code:
        sys.path.insert(0, code)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, HERE)
    import tensorflow as tf

    import tfp_nice as tn
    from workers import _data

    d = 64
    model = tn.NICE((d,), num_couplings=4, hidden_units=[64, 64])
    model.compile("adam")
    model.fit(_data(d, 512), epochs=1, batch_size=256, verbose=0)
    in_process = tf.function(model.log_prob)
    folder = os.path.join(tempfile.mkdtemp(), "saved")
    model.export(folder)
    signature = tf.saved_model.load(folder).signatures["log_prob"]
    x = tf.constant(_data(d, 1024, seed=1))
    runs = {"in-process": lambda: in_process(x).numpy(),
            "signature": lambda: signature(x=x)["log_prob"].numpy()}
    for run in runs.values():
        for _ in range(5):
            run()
    print("READY " + os.path.dirname(tn.__file__), flush=True)
    for line in sys.stdin:
        run = runs[line.strip()]
        start = time.perf_counter()
        for _ in range(CALLS):
            run()
        print(json.dumps((time.perf_counter() - start) / CALLS * 1e3), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="checkout of the older code")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--json", help="write every timing here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs, codes = {}, {}
    for name, code in (("before", os.path.abspath(args.baseline)), ("after", "")):
        procs[name] = subprocess.Popen([sys.executable, __file__, "--baseline", "-",
                                        "--worker", code], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=env)
    for name, proc in procs.items():
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"the {name} worker did not start")
        codes[name] = line.split(" ", 1)[1].strip()
    times = {(name, way): [] for name in procs for way in ("in-process", "signature")}
    for r in range(args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for way in ("in-process", "signature"):
            for name in order:
                procs[name].stdin.write(way + "\n")
                procs[name].stdin.flush()
                times[(name, way)].append(json.loads(procs[name].stdout.readline()))
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    print(f"before: {codes['before']}\nafter: {codes['after']}\n"
          f"{args.rounds} rounds of {CALLS} calls, batch 1024, ms per call (median), and the "
          "paired ratio before/after per round (median, quartiles; > 1: after is faster)")
    summary = {"codes": codes, "rounds": args.rounds}
    for way in ("in-process", "signature"):
        before, after = times[("before", way)], times[("after", way)]
        ratios = sorted(b / a for b, a in zip(before, after))
        q = len(ratios) // 4
        summary[way] = {"before_ms": statistics.median(before),
                        "after_ms": statistics.median(after),
                        "ratio_median": statistics.median(ratios),
                        "ratio_quartiles": [ratios[q], ratios[-q - 1]]}
        print(f"* {way}: before {summary[way]['before_ms']:.3f}, after "
              f"{summary[way]['after_ms']:.3f}; ratio {statistics.median(ratios):.3f} "
              f"({ratios[q]:.3f} to {ratios[-q - 1]:.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**summary, "times": {f"{n} {w}": v for (n, w), v in times.items()}},
                      f, indent=1)


if __name__ == "__main__":
    main()
