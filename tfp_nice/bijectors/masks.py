"""Partitions of an event into a conditioning part A and a transformed part B.

A mask is a boolean array of the event's shape: `True` marks part A, which a
coupling layer passes through unchanged and conditions on; `False` marks part
B, which it transforms. `~mask` swaps the roles, as NICE does between
consecutive couplings.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from tfp_nice._choices import PARTITIONS

__all__ = ["PARTITIONS", "partition_mask", "check_mask"]


def check_mask(mask: ArrayLike, event_shape: Sequence[int] | None = None) -> np.ndarray:
    """Returns `mask` as a numpy boolean array after checking it.

    Args:
      mask: array-like of booleans (or of 0/1), `True` for the conditioning part.
      event_shape: optional event shape the mask must have.

    Raises:
      ValueError: if the mask is not boolean (or 0/1), is a scalar, does not
        have `event_shape`, or leaves one side empty.
    """
    raw = np.asarray(mask)
    if raw.dtype == bool:
        arr = raw
    elif np.issubdtype(raw.dtype, np.number) and np.isin(raw, (0, 1)).all():
        arr = raw.astype(bool)
    else:
        raise ValueError(
            f"A coupling mask must be boolean (or 0/1), got dtype {raw.dtype}."
        )
    if arr.ndim == 0:
        raise ValueError("A coupling mask must have the event's shape, got a scalar.")
    if event_shape is not None and tuple(arr.shape) != tuple(event_shape):
        raise ValueError(
            f"The coupling mask has shape {tuple(arr.shape)} but the event shape "
            f"is {tuple(event_shape)}."
        )
    n_a = int(arr.sum())
    if n_a == 0 or n_a == arr.size:
        side = "transformed (False)" if n_a == arr.size else "conditioning (True)"
        raise ValueError(
            f"The coupling mask of shape {tuple(arr.shape)} has an empty "
            f"{side} side: {n_a} of its {arr.size} entries are True."
        )
    return arr


def partition_mask(partition: str, event_shape: Sequence[int]) -> np.ndarray:
    """Returns the boolean mask of a named partition (`True` = conditioning part).

    Args:
      partition: one of
        * `"halves"`: the first `size // 2` entries of the flattened event;
        * `"odd_even"`: NICE's interleave, the entries of even flat index
          (0, 2, 4, ...; the paper's odd 1-based indices);
        * `"checkerboard"`: pixels with `(i + j)` even, for `(h, w)` or
          `(h, w, c)` events (all channels of a pixel together);
        * `"channel"`: the first `c // 2` channels of an `(h, w, c)` event.
      event_shape: the event shape, a sequence of positive ints.

    Raises:
      ValueError: for an unknown partition, an event shape it does not apply
        to, or an event too small to split.
    """
    event_shape = tuple(int(d) for d in event_shape)
    if not event_shape or any(d <= 0 for d in event_shape):
        raise ValueError(
            f"event_shape must be a non-empty tuple of positive ints, got {event_shape}."
        )
    size = int(np.prod(event_shape))
    if partition == "halves":
        mask = (np.arange(size) < size // 2).reshape(event_shape)
    elif partition == "odd_even":
        mask = (np.arange(size) % 2 == 0).reshape(event_shape)
    elif partition == "checkerboard":
        if len(event_shape) not in (2, 3):
            raise ValueError(
                "The 'checkerboard' partition needs an (h, w) or (h, w, c) event, "
                f"got event shape {event_shape}."
            )
        h, w = event_shape[:2]
        board = (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0
        mask = np.broadcast_to(board.reshape(board.shape + (1,) * (len(event_shape) - 2)),
                               event_shape).copy()
    elif partition == "channel":
        if len(event_shape) != 3:
            raise ValueError(
                "The 'channel' partition needs an (h, w, c) event, "
                f"got event shape {event_shape}."
            )
        c = event_shape[-1]
        mask = np.broadcast_to(np.arange(c) < c // 2, event_shape).copy()
    else:
        raise ValueError(
            f"Unknown partition {partition!r}; expected one of {PARTITIONS}."
        )
    return check_mask(mask, event_shape)
