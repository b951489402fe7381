"""Shared CLI helpers: turn user-fixable errors into clean click errors."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pandas as pd

from qbank.pool import ItemPool, PoolError, load_pool
from qbank.selection import sh_p_from_frame


def read_pool(path: str, option: str = "--pool") -> ItemPool:
    try:
        return load_pool(path)
    except PoolError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def read_k_file(path: str, pool: ItemPool, option: str = "--k-file") -> np.ndarray:
    """CLI wrapper of :func:`qbank.selection.sh_p_from_frame` for a CSV path."""
    try:
        frame = pd.read_csv(path, dtype={"item_id": str})
        return sh_p_from_frame(frame, pool, source=str(path))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def out_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot create {path}: {exc}", param_hint="--out") from None
    return out
