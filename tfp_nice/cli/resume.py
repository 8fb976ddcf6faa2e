"""`tfp-nice train --resume`: a whole-model backup after every epoch, and going on from it."""

import csv
import os
import pathlib

import keras

__all__ = ["EpochBackup", "latest_backup", "read_history"]


class EpochBackup(keras.callbacks.Callback):
    """Saves the whole model (optimizer included) after every epoch, atomically.

    Each backup is written under a temporary name and renamed to
    `epoch-<n>.keras` (n finished epochs) once complete, so a kill at any moment
    leaves the previous backup whole; older ones are then removed.
    """

    def __init__(self, folder):
        super().__init__()
        self.folder = pathlib.Path(folder)

    def on_epoch_end(self, epoch, logs=None):
        partial = self.folder / "partial.keras"
        self.model.save(partial)
        os.replace(partial, self.folder / f"epoch-{epoch + 1}.keras")
        for old in self.folder.glob("epoch-*.keras"):
            if old.name != f"epoch-{epoch + 1}.keras":
                old.unlink()


def latest_backup(folder):
    """`(finished_epochs, path)` of the newest whole backup, or `(0, None)`."""
    found = sorted((int(p.stem.split("-")[1]), p) for p in folder.glob("epoch-*.keras"))
    return found[-1] if found else (0, None)


def read_history(path):
    """The per-epoch logs of a CSVLogger file, the last row of each epoch kept."""
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows[int(row["epoch"])] = row
    keys = [k for k in next(iter(rows.values())) if k != "epoch"] if rows else []
    return {k: [float(rows[e][k]) for e in sorted(rows)] for k in keys}
