"""Error-message helpers shared by the core's validators."""

from __future__ import annotations

SHOWN = 10  # how many offending ids or rows a message names before "and N more"


def shown(values, limit: int = SHOWN) -> str:
    """``['Q17', 'Q203'] and 5 more``: the first ``limit`` values, then how many were left out."""
    values = [str(v) for v in values]
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return f"{values[:limit]}{more}"
