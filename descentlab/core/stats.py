"""Summary statistics across seeds or runs, with one policy for missing and bad values.

``None`` is a value that was not measured (a metric a seed did not produce): it is skipped.
A NaN or infinity is a measured failure (a diverged run): it makes the mean and the std NaN,
so a failure can never vanish from an average. The std is the sample std (ddof = 1), 0 for
a single value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """``(mean, sample std)`` of ``values`` under the module's policy (NaN, NaN if empty)."""
    vals = [float(v) for v in values if v is not None]
    if not vals or not all(math.isfinite(v) for v in vals):
        return math.nan, math.nan
    m = math.fsum(vals) / len(vals)
    if len(vals) == 1:
        return m, 0.0
    try:
        return m, math.sqrt(math.fsum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    except OverflowError:
        return m, math.inf


def aggregate(per_seed: Sequence[dict[str, Any]], fields: Sequence[str] | None = None
              ) -> dict[str, float]:
    """``FIELD`` (mean) and ``FIELD_std`` for each numeric field of the per-seed records
    (``fields``: these only; default: every numeric field of the first record)."""
    if fields is None:
        fields = [k for k, v in (per_seed[0] if per_seed else {}).items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) or v is None]
    out: dict[str, float] = {}
    for f in fields:
        out[f], out[f"{f}_std"] = mean_std(r.get(f) for r in per_seed)
    return out
