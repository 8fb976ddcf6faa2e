"""The catalogue of bad inputs: each gives an error that names the problem and
leaves the model and every file as they were.

Cases (by test id):
 1 wrong-event-size            log_prob of (n, 5) data for a (6,) model
 2 wrong-rank                  fit on (n, 2, 3) data for a (6,) model
 3 integer-data                fit on int32 data
 4 float16-data                fit on float16 data
 5 nan-in-training-data        fit with NaN in row 3 (caught before training)
 6 inf-in-training-data        fit with inf in row 5
 7 empty-data-set              fit on zero examples
 8 batch-larger-than-data      fit with batch_size 64 on 10 examples
 9 mask-with-empty-side        a coupling mask with no transformed entry
10 mismatched-log-scale        nice_bijector with log_scale (5,) for event (6,)
11 negative-num-samples        sample(-1)
12 non-integer-num-samples     sample(2.5)
13 zero-temperature            sample(3, temperature=0)
14 negative-temperature        sample(3, temperature=-1)
15 unknown-prior               NICE(prior="cauchy")
16 unknown-partition           NICE(partition="diagonal")
17 missing-keras-file          loading a .keras file that is not there
18 truncated-keras-file        loading half of a .keras file
19 corrupt-saved-model         loading a SavedModel folder with a garbage saved_model.pb
20 truncated-idx               reading an IDX file cut short
21 corrupt-idx-gzip            reading half of a gzipped IDX file
22 signature-wrong-shape       the log_prob signature called with (n, 7) data
23 signature-wrong-dtype       the log_prob signature called with float64 data
24 export-over-existing        exporting onto an existing folder without overwrite
"""

import gzip

import numpy as np
import pytest
import tensorflow as tf

import tfp_nice as tn
from tfp_nice.cli.inputs import InputError, load_model


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    model = tn.NICE((6,), num_couplings=2, hidden_units=(8,))
    rng = np.random.default_rng(0)
    for w in model.trainable_weights:
        w.assign(rng.normal(scale=0.2, size=w.shape).astype("float32"))
    model.compile("adam")
    model.save(folder / "m.keras")
    tn.export_saved_model(model, folder / "saved")
    raw = (folder / "m.keras").read_bytes()
    (folder / "half.keras").write_bytes(raw[: len(raw) // 2])
    (folder / "broken").mkdir()
    (folder / "broken" / "saved_model.pb").write_bytes(b"\x00garbage")
    images = rng.integers(0, 256, size=(3, 4, 4)).astype(np.uint8)
    idx = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in images.shape)
    idx += images.tobytes()
    (folder / "cut.idx").write_bytes(idx[:-5])
    packed = gzip.compress(idx)
    (folder / "cut.idx.gz").write_bytes(packed[: len(packed) // 2])
    return {"folder": folder, "model": model,
            "served": tf.saved_model.load(str(folder / "saved"))}


def _x(n=10, d=6, dtype="float32"):
    return np.random.default_rng(1).normal(size=(n, d)).astype(dtype)


def _with_bad_row(row, value):
    x = _x()
    x[row, 2] = value
    return x


CASES = {
    "wrong-event-size": (lambda s: s["model"].log_prob(_x(d=5)), ValueError,
                         r"event shape \(6,\)"),
    "wrong-rank": (lambda s: s["model"].fit(_x(d=6).reshape(10, 2, 3), verbose=0), ValueError,
                   r"examples of shape \(6,\).*\(10, 2, 3\)"),
    "integer-data": (lambda s: s["model"].fit(_x().astype("int32"), verbose=0), TypeError,
                     "dequantize"),
    "float16-data": (lambda s: s["model"].fit(_x(dtype="float16"), verbose=0), TypeError,
                     "float16"),
    "nan-in-training-data": (lambda s: s["model"].fit(_with_bad_row(3, np.nan), verbose=0),
                             ValueError, "NaN or inf in row 3"),
    "inf-in-training-data": (lambda s: s["model"].fit(_with_bad_row(5, np.inf), verbose=0),
                             ValueError, "NaN or inf in row 5"),
    "empty-data-set": (lambda s: s["model"].fit(_x(n=0), verbose=0), ValueError,
                       "no training examples"),
    "batch-larger-than-data": (lambda s: s["model"].fit(_x(), batch_size=64, verbose=0),
                               ValueError, "batch_size 64 is larger than the 10"),
    "mask-with-empty-side": (lambda s: tn.AdditiveCoupling(lambda a: a, np.ones(6, bool)),
                             ValueError, "empty transformed"),
    "mismatched-log-scale": (lambda s: tn.nice_bijector((6,), [lambda a: a],
                                                        log_scale=tf.zeros(5)),
                             ValueError, r"log_scale has shape \(5,\)"),
    "negative-num-samples": (lambda s: s["model"].sample(-1), ValueError, "num_samples"),
    "non-integer-num-samples": (lambda s: s["model"].sample(2.5), ValueError, "num_samples"),
    "zero-temperature": (lambda s: s["model"].sample(3, temperature=0.0), ValueError,
                         "temperature"),
    "negative-temperature": (lambda s: s["model"].sample(3, temperature=-1.0), ValueError,
                             "temperature"),
    "unknown-prior": (lambda s: tn.NICE((6,), prior="cauchy"), ValueError, "Unknown prior"),
    "unknown-partition": (lambda s: tn.NICE((6,), partition="diagonal"), ValueError,
                          "partition must be one of"),
    "missing-keras-file": (lambda s: load_model(s["folder"] / "none.keras"), InputError,
                           "No model at"),
    "truncated-keras-file": (lambda s: load_model(s["folder"] / "half.keras"), InputError,
                             "not a readable .keras model"),
    "corrupt-saved-model": (lambda s: load_model(s["folder"] / "broken"), InputError,
                            "not a readable tfp_nice SavedModel"),
    "truncated-idx": (lambda s: tn.data.read_idx(s["folder"] / "cut.idx"), ValueError,
                      r"truncated.*\(3, 4, 4\)"),
    "corrupt-idx-gzip": (lambda s: tn.data.read_idx(s["folder"] / "cut.idx.gz"), ValueError,
                         "corrupt or truncated gzip"),
    "signature-wrong-shape": (lambda s: s["served"].signatures["log_prob"](
                                  x=tf.constant(_x(d=7))),
                              tf.errors.InvalidArgumentError, r"\[batch, 6\] float32"),
    "signature-wrong-dtype": (lambda s: s["served"].signatures["log_prob"](
                                  x=tf.constant(_x(dtype="float64"))),
                              tf.errors.InvalidArgumentError, "expected to be a float tensor"),
    "export-over-existing": (lambda s: tn.export_saved_model(s["model"], s["folder"] / "saved"),
                             FileExistsError, "overwrite=True"),
}


def _snapshot(setting):
    files = {p: p.read_bytes() for p in setting["folder"].rglob("*") if p.is_file()}
    return [w.numpy().copy() for w in setting["model"].weights], files


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(setting, name):
    action, error, message = CASES[name]
    weights, files = _snapshot(setting)
    with pytest.raises(error, match=message):
        action(setting)
    new_weights, new_files = _snapshot(setting)
    for before, after in zip(weights, new_weights):
        np.testing.assert_array_equal(before, after)
    assert new_files == files


def test_the_documented_catalogue_is_the_tested_one():
    """The list at the top of this file is what a reader trusts: it names every case."""
    listed = [line.split()[1] for line in __doc__.splitlines()
              if line.strip() and line.split()[0].isdigit()]
    assert listed == list(CASES)
