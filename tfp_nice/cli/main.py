"""`tfp-nice`: train, sample from and evaluate NICE flows from the command line.

Arguments are parsed before TensorFlow is imported, so `--help`, `--version`
and bad arguments answer at once. TensorFlow's C++ start-up logs (oneDNN, CUDA
probing) are kept quiet unless the user has set `TF_CPP_MIN_LOG_LEVEL`: since
TensorFlow 2.19 some of them ignore that variable, so while TensorFlow loads and
finds its devices, what native code writes to the standard error goes nowhere.
"""

import contextlib
import os
import sys

from tfp_nice._extras import MissingExtraError
from tfp_nice.cli import plots
from tfp_nice.cli.inputs import InputError
from tfp_nice.cli.parser import build_parser, parse_args

__all__ = ["EXIT_BAD_INPUT", "build_parser", "main"]

EXIT_BAD_INPUT = 2


@contextlib.contextmanager
def _native_stderr_to_devnull():
    """Meanwhile, file descriptor 2 (where C++ logs go) points at the null device.

    Python's exceptions are unaffected: they propagate and are printed after.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _load_tensorflow_quietly():
    """Imports TensorFlow and lets it find its devices without its start-up logs."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return  # the user chose a level (or TensorFlow is loaded): leave the logs alone
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # later logs: warnings and info off
    with _native_stderr_to_devnull():
        import tensorflow as tf

        tf.config.list_physical_devices()  # probes CUDA now, not in the first step


# The commands that draw pictures (matplotlib, the cli extra): checked before TensorFlow loads.
_DRAWING = ("train", "sample", "inpaint")


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.command in _DRAWING:
            plots.check_available()
        _load_tensorflow_quietly()
        from tfp_nice.cli.commands import COMMANDS

        return COMMANDS[args.command](args)
    except (InputError, MissingExtraError, FileNotFoundError, FileExistsError) as err:
        print(f"tfp-nice {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
