"""Which results of a query count as relevant, and ordering them by date.

The cutoff is per query: a result is relevant when its score stands out from this
query's own score distribution, so a query with a few clear matches keeps those and a
flat one keeps its upper tail. No fixed score line works across queries with CLIP.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# The cutoff statistics come from at most this many best candidates of a query.
CUTOFF_POOL = 2000
# A result is relevant when its score is at least mean + CUTOFF_Z * std of the pool ...
CUTOFF_Z = 1.0
# ... and the best few are always shown, however flat the distribution.
MIN_KEEP = 3


def relevant_count(scores: np.ndarray, z: float = CUTOFF_Z, min_keep: int = MIN_KEEP) -> int:
    """How many of these descending scores stand out from this query's own distribution.

    Keeps scores >= mean + z * std of ``scores`` (so the line moves with each query), and
    never fewer than ``min_keep``. Equal scores are never split.
    """
    n = len(scores)
    if n <= min_keep:
        return n
    mean, std = float(np.mean(scores)), float(np.std(scores))
    if std < 1e-9:
        return n  # nothing stands out, so nothing is hidden
    keep = max(int(np.count_nonzero(scores >= mean + z * std)), min_keep)
    while keep < n and scores[keep] >= scores[keep - 1]:
        keep += 1
    return keep


def sort_by_date(
    order: list[tuple[int, float]], taken_at: Callable[[int], float | None], *, newest: bool
) -> list[tuple[int, float]]:
    """Stable sort of ``(photo id, score)`` by date taken; undated photos go last.

    Ties keep their relevance order, so equal dates still show the best match first.
    """

    def key(item: tuple[int, float]) -> tuple[bool, float]:
        taken = taken_at(item[0])
        if taken is None:
            return (True, 0.0)
        return (False, -taken if newest else taken)

    return sorted(order, key=key)


__all__ = ["CUTOFF_POOL", "CUTOFF_Z", "MIN_KEEP", "relevant_count", "sort_by_date"]
