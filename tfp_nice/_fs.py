"""Writing folders atomically: build beside the target, then rename into place."""

import contextlib
import os
import pathlib
import shutil
import tempfile

__all__ = ["staged_dir"]


def _replace(new, target):
    """Moves folder `new` to `target`; an existing `target` goes only once `new` is in."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(target, overwrite=False):
    """Yields a fresh temporary folder beside `target`, moved to `target` on success.

    On any exception the temporary folder is removed and `target` is left as
    it was. Raises `FileExistsError` if `target` exists and not `overwrite`.
    """
    target = pathlib.Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it.")
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        _replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
