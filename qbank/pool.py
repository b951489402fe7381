"""Item pools: validated item parameters, CSV/Parquet input and output, synthetic pools."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qbank._messages import shown

__all__ = ["ItemPool", "PoolError", "generate_pool", "load_pool", "save_pool"]

REQUIRED_COLUMNS = ("item_id", "a", "b", "c")
PARAMETER_COLUMNS = ("a", "b", "c", "D")
MAX_A, MAX_ABS_B, MAX_D = 20.0, 20.0, 2.0  # sanity bounds of item parameters (ItemPool.from_frame)


class PoolError(ValueError):
    """An item pool failed validation; the message names the field and the rows."""


@dataclass(frozen=True, eq=False)
class ItemPool:
    """A validated, immutable pool of IRT items (3PL parameterisation, 1PL/2PL as special cases).

    Attributes
    ----------
    item_id : ndarray of shape (n_items,), dtype object (str)
    a, b, c, D : ndarray of shape (n_items,), float
    topic : ndarray of shape (n_items,), dtype object (str), or None
    name : str
        A label for reports and bundles (usually the file stem).
    """

    item_id: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    D: np.ndarray
    topic: np.ndarray | None = None
    name: str = "pool"
    _index: dict = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {k: i for i, k in enumerate(self.item_id)})
        for arr in (self.item_id, self.a, self.b, self.c, self.D):
            arr.setflags(write=False)
        if self.topic is not None:
            self.topic.setflags(write=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(cls, frame: pd.DataFrame, name: str = "pool", source: str = "pool") -> ItemPool:
        """Validate a DataFrame with columns ``item_id, a, b, c`` (+ optional ``D``, ``topic``).

        Raises
        ------
        PoolError
            Missing column, non-numeric or NaN parameter, ``a <= 0``, ``c`` outside
            ``[0, 1)``, ``D <= 0``, duplicate or empty item id; the message names the
            rows (by item id, or by 1-based data row when the id itself is bad).
        """
        missing = [col for col in REQUIRED_COLUMNS if col not in frame.columns]
        if missing:
            raise PoolError(
                f"{source}: missing column(s) {missing}; an item pool needs columns "
                f"{list(REQUIRED_COLUMNS)} and may have 'D' and 'topic'"
            )
        if len(frame) == 0:
            raise PoolError(f"{source}: the pool has no items")
        frame = frame.reset_index(drop=True)
        raw_ids = frame["item_id"]
        empty = raw_ids.isna() | (raw_ids.astype(str).str.strip() == "")
        if empty.any():
            rows = (np.flatnonzero(empty.to_numpy()) + 1).tolist()
            raise PoolError(f"{source}: item_id is empty in data row(s) {rows[:10]}")
        item_id = raw_ids.astype(str).str.strip().to_numpy(dtype=object)
        dup = pd.Series(item_id).duplicated(keep=False).to_numpy()
        if dup.any():
            raise PoolError(f"{source}: duplicate item_id {sorted(set(item_id[dup]))[:10]}")

        values = {}
        for col in PARAMETER_COLUMNS:
            if col == "D" and col not in frame.columns:
                values[col] = np.ones(len(frame))
                continue
            numeric = pd.to_numeric(frame[col], errors="coerce")
            bad = numeric.isna().to_numpy() | ~np.isfinite(numeric.to_numpy(dtype=float, na_value=np.nan))
            if bad.any():
                raise PoolError(
                    f"{source}: column '{col}' must be a finite number; bad items: {shown(item_id[bad])}"
                )
            values[col] = numeric.to_numpy(dtype=float)

        # Sanity bounds, far wider than calibrated items get (Baker & Kim 2004, sec. 2: a about
        # 0.3-3, b about -3..3 on the logit scale): a value past them is a broken file, not an item.
        checks = [
            ("a", (values["a"] <= 0) | (values["a"] > MAX_A), f"a must be in (0, {MAX_A:g}]"),
            ("b", np.abs(values["b"]) > MAX_ABS_B, f"b must be in [-{MAX_ABS_B:g}, {MAX_ABS_B:g}]"),
            ("c", (values["c"] < 0) | (values["c"] >= 1), "c must be in [0, 1)"),
            ("D", (values["D"] <= 0) | (values["D"] > MAX_D), f"D must be in (0, {MAX_D:g}]"),
        ]
        for _, bad, message in checks:
            if bad.any():
                raise PoolError(f"{source}: {message}; bad items: {shown(item_id[bad])}")

        topic = None
        if "topic" in frame.columns:
            topic = frame["topic"].fillna("").astype(str).to_numpy(dtype=object)
        return cls(item_id, values["a"], values["b"], values["c"], values["D"], topic, name)

    @classmethod
    def from_arrays(cls, a, b, c=None, D=1.0, item_id=None, topic=None, name="pool") -> ItemPool:
        """Build a pool from parameter arrays (validated like a file)."""
        a = np.asarray(a, dtype=float)
        n_items = a.shape[0]
        frame = pd.DataFrame(
            {
                "item_id": item_id if item_id is not None else [f"I{i + 1:04d}" for i in range(n_items)],
                "a": a,
                "b": np.asarray(b, dtype=float),
                "c": np.zeros(n_items) if c is None else np.asarray(c, dtype=float),
                "D": np.broadcast_to(np.asarray(D, dtype=float), (n_items,)),
            }
        )
        if topic is not None:
            frame["topic"] = topic
        return cls.from_frame(frame, name=name)

    # ------------------------------------------------------------------ views
    @property
    def n_items(self) -> int:
        return int(self.a.shape[0])

    def __len__(self) -> int:
        return self.n_items

    @property
    def model(self) -> str:
        """'1PL', '2PL' or '3PL': the simplest model that describes every item."""
        if np.any(self.c > 0):
            return "3PL"
        if np.allclose(self.a, self.a[0]):
            return "1PL"
        return "2PL"

    def index_of(self, item_ids) -> np.ndarray:
        """Positions of the given item ids; raises ``KeyError`` naming unknown ids."""
        unknown = [i for i in item_ids if i not in self._index]
        if unknown:
            raise KeyError(f"unknown item_id(s) {unknown[:10]}")
        return np.array([self._index[i] for i in item_ids], dtype=np.intp)

    def subset(self, positions) -> ItemPool:
        positions = np.asarray(positions, dtype=np.intp)
        topic = None if self.topic is None else self.topic[positions].copy()
        return ItemPool(
            self.item_id[positions].copy(),
            self.a[positions].copy(),
            self.b[positions].copy(),
            self.c[positions].copy(),
            self.D[positions].copy(),
            topic,
            self.name,
        )

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({"item_id": self.item_id, "a": self.a, "b": self.b, "c": self.c, "D": self.D})
        if self.topic is not None:
            frame["topic"] = self.topic
        return frame

    def sha256(self) -> str:
        """Checksum of ids and parameters (rounded to 1e-9), independent of file format."""
        cached = self.__dict__.get("_sha256")  # the pool is immutable: compute once
        if cached is not None:
            return cached
        payload = [
            [str(i), round(float(a), 9), round(float(b), 9), round(float(c), 9), round(float(d), 9)]
            for i, a, b, c, d in zip(self.item_id, self.a, self.b, self.c, self.D)
        ]
        digest = hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()
        object.__setattr__(self, "_sha256", digest)
        return digest


def load_pool(path, name: str | None = None) -> ItemPool:
    """Read and validate a pool from CSV or Parquet.

    Raises
    ------
    PoolError
        For an unreadable file or any invalid row (see :meth:`ItemPool.from_frame`).
    """
    path = Path(path)
    if not path.exists():
        raise PoolError(f"{path}: no such file")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={"item_id": str, "topic": str}, skipinitialspace=True)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise PoolError(f"{path}: cannot read item pool: {exc}") from exc
    return ItemPool.from_frame(frame, name=name or path.stem, source=str(path))


def save_pool(pool: ItemPool, path) -> Path:
    """Write a pool as CSV or Parquet (by extension)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pool.to_frame()
    if path.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, float_format="%.6f")
    return path


def generate_pool(
    n_items: int,
    model: str = "3PL",
    *,
    rng=None,
    a_range=(0.8, 2.0),
    b_mean=0.0,
    b_sd=1.0,
    c_range=(0.0, 0.25),
    D=1.0,
    topics=None,
    name="synthetic",
) -> ItemPool:
    """Draw a synthetic pool: ``a ~ U(a_range)``, ``b ~ N(b_mean, b_sd)``, ``c ~ U(c_range)``.

    ``model='2PL'`` sets ``c = 0``; ``'1PL'`` also sets ``a = 1``. ``topics`` (a list of
    names) assigns topics round-robin in a shuffled order.
    """
    if n_items < 1:
        raise PoolError(f"n_items must be >= 1, got {n_items}")
    model = model.upper()
    if model not in {"1PL", "2PL", "3PL"}:
        raise PoolError(f"model must be 1PL, 2PL or 3PL, got {model!r}")
    rng = np.random.default_rng(rng)
    a = rng.uniform(*a_range, n_items)
    b = rng.normal(b_mean, b_sd, n_items)
    c = rng.uniform(*c_range, n_items)
    if model != "3PL":
        c = np.zeros(n_items)
    if model == "1PL":
        a = np.ones(n_items)
    topic = None
    if topics:
        topic = np.array([topics[i % len(topics)] for i in rng.permutation(n_items)], dtype=object)
    return ItemPool.from_arrays(a, b, c, D=D, topic=topic, name=name)
