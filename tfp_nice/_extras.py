"""Optional dependencies: what the `cli` extra brings, and one clear error where it is missing.

The library needs TensorFlow, TensorFlow Probability, Keras and numpy alone. The
command line's plots (matplotlib) and the embedded digits data set (scikit-learn)
come with `pip install "tfp_nice[cli]"`.
"""

import importlib

__all__ = ["INSTALL_CLI", "MissingExtraError", "require"]

INSTALL_CLI = "pip install 'tfp_nice[cli]'"
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "matplotlib": "matplotlib"}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says what to install."""


def require(module, purpose):
    """Imports and returns `module`, or raises `MissingExtraError` naming the install.

    Args:
      module: the module to import, e.g. `"sklearn.datasets"`.
      purpose: what needs it, as the start of the message ("the digits data set").
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".")[0]
        if err.name is not None and err.name.split(".")[0] != top:
            raise  # the module is there but something it imports is broken
        dist = _DISTRIBUTIONS.get(top, top)
        raise MissingExtraError(
            f"{purpose} needs {dist}, which is not installed: {INSTALL_CLI}") from None
