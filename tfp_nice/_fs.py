"""Writing folders atomically: build beside the target, then rename into place.

Temporary files and folders start private to their owner (0600/0700); what is
renamed into place gets the mode a plain `open`/`mkdir` would have given it, so
outputs follow the user's umask.
"""

import contextlib
import os
import pathlib
import shutil
import tempfile

__all__ = ["follow_umask", "staged_dir"]


def _umask():
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def follow_umask(path):
    """Gives `path` the mode a new file or folder gets under the current umask."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~_umask())


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
        follow_umask(tmp)
        yield tmp
        _replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
