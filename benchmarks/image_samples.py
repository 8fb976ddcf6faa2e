"""A figure of a trained image flow's samples: 16 at temperature 0.7, 16 at 1.0.

    python benchmarks/image_samples.py MODEL.keras docs/glow-samples.png

`MODEL.keras` is any saved `tn.Flow` over images (for instance the one section 7's
quality task writes with `save=`); the figure is two rows per temperature of 8 samples.
"""
import argparse
import sys

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a saved tfp_nice flow (.keras) over images")
    parser.add_argument("out", help="where to write the PNG")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras

    import tfp_nice  # noqa: F401  (registers the flow's classes for loading)
    from tfp_nice.cli.plots import image_grid

    model = keras.models.load_model(args.model)
    if len(model.event_shape) != 3:
        parser.error(f"{args.model} is a flow over events of shape {model.event_shape}, "
                     "not images (h, w, c)")
    samples = [model.sample(16, temperature=t, seed=args.seed).numpy() for t in (0.7, 1.0)]
    image_grid(np.concatenate(samples), model.event_shape, args.out,
               title="samples: temperature 0.7 (top two rows), 1.0 (bottom two)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
