"""Shared CLI helpers: turn user-fixable errors into clean click errors."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pandas as pd

from qbank.pool import ItemPool, PoolError, load_pool


def read_pool(path: str, option: str = "--pool") -> ItemPool:
    try:
        return load_pool(path)
    except PoolError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def read_k_file(path: str, pool: ItemPool, option: str = "--k-file") -> np.ndarray:
    """sh_p per pool item from a CSV with columns ``item_id, sh_p``; every pool item must appear."""
    try:
        frame = pd.read_csv(path, dtype={"item_id": str})
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: cannot read: {exc}", param_hint=option) from None
    missing = {"item_id", "sh_p"} - set(frame.columns)
    if missing:
        raise click.BadParameter(f"{path}: missing column(s) {sorted(missing)}", param_hint=option)
    sh_p = pd.to_numeric(frame["sh_p"], errors="coerce")
    bad = sh_p.isna() | (sh_p < 0) | (sh_p > 1)
    if bad.any():
        rows = (np.flatnonzero(bad.to_numpy()) + 2).tolist()[:10]
        raise click.BadParameter(f"{path}: sh_p must be a number in [0, 1]; bad line(s) {rows}", param_hint=option)
    if frame["item_id"].duplicated().any():
        dup = sorted(frame.loc[frame["item_id"].duplicated(), "item_id"])[:10]
        raise click.BadParameter(f"{path}: duplicate item_id {dup}", param_hint=option)
    by_id = dict(zip(frame["item_id"].astype(str), sh_p))
    unknown = sorted(set(by_id) - set(pool.item_id))
    if unknown:
        raise click.BadParameter(f"{path}: item_id not in the pool: {unknown[:10]}", param_hint=option)
    absent = [i for i in pool.item_id if i not in by_id]
    if absent:
        raise click.BadParameter(
            f"{path}: no sh_p for {len(absent)} pool item(s), e.g. {absent[:10]}", param_hint=option
        )
    return np.array([by_id[i] for i in pool.item_id], dtype=float)


def out_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.BadParameter(f"cannot create {path}: {exc}", param_hint="--out") from None
    return out
