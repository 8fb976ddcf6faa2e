"""The `tfp-nice` command line's arguments."""

import argparse

from tfp_nice._choices import COUPLING_KINDS, FLOWS, HIDE, PARTITIONS, PERMUTATIONS, PRESETS
from tfp_nice._validation import check_int, check_positive_float
from tfp_nice._version import __version__
from tfp_nice.cli.inputs import BUILTIN_DATA

__all__ = ["build_parser", "parse_args"]


# The checks are the package's own (tfp_nice._validation); argparse names the option.


def _positive_int(text):
    try:
        return check_int(int(text), "value")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None


def _positive_float(text):
    try:
        return check_positive_float(float(text), "value")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}") from None


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tfp-nice",
        description="Train, sample from and evaluate NICE normalizing flows "
                    "(TensorFlow Probability + Keras 3).",
    )
    parser.add_argument("--version", action="version", version=f"tfp_nice {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    data_help = (f"a built-in data set ({', '.join(BUILTIN_DATA)}) or a .npy, .csv, .npz "
                 "or MNIST IDX file of shape (n, d), (n, h, w) or (n, h, w, c)")
    train = sub.add_parser("train", help="train a NICE flow and write its outputs to --out")
    train.add_argument("--data", default="digits", help=f"{data_help} (default: digits)")
    train.add_argument("--num-points", type=_positive_int, default=10000,
                       help="points drawn from a 2-D toy data set (default: 10000)")
    train.add_argument("--num-levels", type=_positive_int, default=None,
                       help="discrete levels of integer data (default: 256 for uint8, "
                            "else max + 1)")
    train.add_argument("--epochs", type=_positive_int, default=300)
    train.add_argument("--batch-size", type=_positive_int, default=64)
    train.add_argument("--learning-rate", type=_positive_float, default=1e-3)
    train.add_argument("--flow", default="nice", choices=list(FLOWS),
                       help="nice: NICE's flow of couplings over vectors (or images with "
                            "--partition checkerboard/channel); multiscale: a multi-scale "
                            "convolutional flow over images (RealNVP's layout, Glow's steps: "
                            "squeeze, per-channel ActNorm, 1x1 convolution, convolutional "
                            "channel coupling, factor-out with a learned prior); maf / iaf: "
                            "masked (inverse) autoregressive steps over the flattened "
                            "examples (--steps of MADEs of --hidden, --coupling the "
                            "transformer: affine by default)")
    train.add_argument("--couplings", type=_positive_int, default=4)
    train.add_argument("--steps", type=_positive_int, default=5,
                       help="--flow maf/iaf: autoregressive steps (default: 5)")
    train.add_argument("--hidden", type=_positive_int, nargs="+", default=[64, 64],
                       help="hidden layer widths of each coupling network (default: 64 64); "
                            "with --flow multiscale, the channels of its hidden convolutions")
    train.add_argument("--scales", type=_positive_int, default=2,
                       help="--flow multiscale: number of scales (the image's sides must be "
                            "multiples of 2 ** scales; default: 2)")
    train.add_argument("--steps-per-scale", type=_positive_int, default=4,
                       help="--flow multiscale: Glow steps per scale (default: 4)")
    train.add_argument("--partition", default="odd_even", choices=list(PARTITIONS),
                       help="how each coupling splits an example (default: odd_even, NICE's); "
                            "checkerboard and channel keep image data in their shape")
    train.add_argument("--coupling", default=None, choices=list(COUPLING_KINDS),
                       help="additive (NICE), affine (RealNVP) or spline (Neural Spline Flows' "
                            "rational-quadratic splines) couplings (default: additive; affine "
                            "with --flow multiscale)")
    train.add_argument("--num-bins", type=_positive_int, default=None,
                       help="--coupling spline: bins of each spline (default: 8)")
    train.add_argument("--tail-bound", type=_positive_float, default=None,
                       help="--coupling spline: the splines act on [-B, B], the identity "
                            "outside (default: 3)")
    train.add_argument("--actnorm", action="store_true",
                       help="an ActNorm before each coupling, started from a sample of the "
                            "training data")
    train.add_argument("--permutation", default="none",
                       choices=["none" if p is None else p for p in PERMUTATIONS],
                       help="a permutation (or a learned LU linear map) before each coupling")
    train.add_argument("--rescaling-init", default="data", choices=["data", "zeros"],
                       help="start of the rescaling's log-scales: from a sample of the "
                            "training data (data) or NICE's zeros")
    train.add_argument("--prior", default=None, choices=["logistic", "normal"],
                       help="the latent's prior (default: logistic, NICE's; normal with "
                            "--flow multiscale)")
    train.add_argument("--no-rescaling", action="store_true",
                       help="leave out NICE's rescaling layer (a volume-preserving flow)")
    train.add_argument("--preset", default=None, choices=PRESETS,
                       help="the model and optimiser of tfp_nice.presets for 28x28 uint8 "
                            "images: affine_mnist (the library's dense recipe), glow_mnist "
                            "(the multi-scale convolutional flow) or nice_mnist (NICE's); "
                            "the architecture flags and --learning-rate must not be given")
    train.add_argument("--labels", default=None,
                       help="train a class-conditional flow p(x | label): class labels, one "
                            "per example of --data in its order (a .npy or .csv of whole "
                            "numbers 0..K-1, or builtin for the digits' own); the coupling "
                            "networks see the one-hot label")
    train.add_argument("--validation-split", type=_fraction, default=0.1)
    train.add_argument("--test-split", type=_fraction, default=0.2)
    train.add_argument("--patience", type=int, default=20,
                       help="early-stopping patience in epochs on the validation NLL "
                            "(0 turns it off; default: 20)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default=None, help="output folder (default: runs/<data>)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    train.add_argument("--resume", action="store_true",
                       help="save the model after every epoch (beside --out) and, if such "
                            "a backup of an interrupted run exists, go on from it")
    train.add_argument("--verbose", type=int, default=None, choices=[0, 1, 2],
                       help="Keras progress: 0 silent, 1 progress bar, 2 one line per epoch "
                            "(default: 1 on a terminal, 2 when the output is redirected)")

    sample = sub.add_parser("sample", help="draw samples from a model")
    sample.add_argument("model", help="a model.keras file or a SavedModel folder")
    sample.add_argument("--num-samples", type=_positive_int, default=64)
    sample.add_argument("--temperature", type=_positive_float, default=1.0)
    sample.add_argument("--seed", type=int, default=0,
                        help="a seed >= 0 repeats its samples; < 0 draws fresh ones "
                             "(default: 0)")
    sample.add_argument("--label", type=int, default=None,
                        help="a class-conditional model's class to sample (0..K-1); "
                             "required for such a model")
    sample.add_argument("--out", default="samples.npy",
                        help="where to write the samples (.npy); a PNG is written beside it")

    inpaint = sub.add_parser("inpaint", help="fill in hidden parts of examples (NICE 5.2)")
    inpaint.add_argument("model", help="a model.keras file (gradients are needed)")
    inpaint.add_argument("--data", default="digits", help=data_help + " (default: digits)")
    inpaint.add_argument("--hide", default="bottom", choices=list(HIDE),
                         help="which part to hide: a half of each image, or a random half")
    inpaint.add_argument("--labels", default=None,
                         help="a class-conditional model's labels of --data (as for train)")
    inpaint.add_argument("--num-examples", type=_positive_int, default=16)
    inpaint.add_argument("--num-steps", type=_positive_int, default=500)
    inpaint.add_argument("--step-scale", type=_positive_float, default=0.1,
                         help="c of the step size c / (100 + i) (default 0.1, which suits "
                              "digits; the paper's 10 suits its MNIST model and overshoots "
                              "on steeper densities: watch log_prob_after)")
    inpaint.add_argument("--noise", type=float, default=0.0,
                         help="scale of the Gaussian noise added to the gradient")
    inpaint.add_argument("--seed", type=int, default=0)
    inpaint.add_argument("--out", default="inpainted.npy",
                         help="where to write the inpainted examples (.npy); a PNG beside it")

    evaluate = sub.add_parser("evaluate", help="NLL and bits/dim of a data set under a model")
    evaluate.add_argument("model", help="a model.keras file or a SavedModel folder")
    evaluate.add_argument("--data", required=True, help=data_help)
    evaluate.add_argument("--labels", default=None,
                          help="a class-conditional model's labels of --data (as for train): "
                               "the NLL is then of p(x | label)")
    evaluate.add_argument("--num-points", type=_positive_int, default=10000)
    evaluate.add_argument("--seed", type=int, default=0)
    parser.subcommands = {"train": train, "sample": sample, "inpaint": inpaint,
                          "evaluate": evaluate}
    return parser


def parse_args(argv=None):
    """The parsed arguments, and in `typed` the options the user gave (by destination).

    A value equal to an option's default says nothing about whether it was typed
    (`--couplings 4` is the default); `typed` does: the arguments are parsed a second
    time by a parser whose defaults are all unset.
    """
    args = build_parser().parse_args(argv)
    probe = build_parser()
    unset = object()  # not a string: argparse converts string defaults with the option's type
    probe.subcommands[args.command].set_defaults(**dict.fromkeys(vars(args), unset))
    given = vars(probe.parse_args(argv))
    args.typed = frozenset(dest for dest, value in given.items()
                           if dest != "command" and value is not unset)
    return args
