"""Train NICE on scikit-learn's digits with `model.fit` and compare with Gaussians.

    python examples/digits.py                 # about 30 s on 2 CPU cores
    TFP_NICE_QUICK=1 python examples/digits.py

80/20 split, pixels dequantized from their 17 levels, a validation split with
early stopping (NICE overfits 1,437 images within a few hundred epochs), and
the held-out bits/dim beside a diagonal and a full-covariance Gaussian's.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfp_nice as tn  # noqa: E402
from tfp_nice.data import (  # noqa: E402
    DIGITS_LEVELS,
    bits_per_dim,
    dequantize,
    gaussian_log_likelihood,
    load_digits,
    train_test_split,
)


def main(argv=None):
    quick = os.environ.get("TFP_NICE_QUICK") == "1"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2 if quick else 400)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--couplings", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train, test = train_test_split(load_digits()[0], test_fraction=0.2, seed=args.seed)
    train = dequantize(train, DIGITS_LEVELS, seed=args.seed)
    test = dequantize(test, DIGITS_LEVELS, seed=args.seed + 1)

    keras.utils.set_random_seed(args.seed)
    model = tn.NICE((64,), num_couplings=args.couplings, hidden_units=tuple(args.hidden),
                    num_levels=DIGITS_LEVELS)
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(train, epochs=args.epochs, batch_size=64, validation_split=0.2,
                        verbose=0, callbacks=[keras.callbacks.EarlyStopping(
                            monitor="val_loss", patience=20, restore_best_weights=True)])
    result = model.evaluate(test, verbose=0, return_dict=True)

    print(f"{'model':<34}held-out bits/dim")
    print(f"{'NICE (' + str(len(history.history['loss'])) + ' epochs)':<34}"
          f"{result['bits_per_dim']:.4f}")
    for covariance, name in (("diag", "diagonal Gaussian"), ("full", "full-covariance Gaussian")):
        nll = -np.mean(gaussian_log_likelihood(train, test, covariance))
        print(f"{name:<34}{bits_per_dim(nll, 64, DIGITS_LEVELS):.4f}")
    return result["bits_per_dim"]


if __name__ == "__main__":
    main()
