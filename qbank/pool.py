"""Item pools: validated item parameters, CSV/Parquet input and output, synthetic pools."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qbank._messages import shown
from qbank.polytomous import DICHOTOMOUS, GRM, MODEL_CODES, MODEL_NAMES

__all__ = ["ItemPool", "PoolError", "generate_pool", "load_pool", "save_pool"]

REQUIRED_COLUMNS = ("item_id", "a", "b", "c")
PARAMETER_COLUMNS = ("a", "b", "c", "D")
MAX_A, MAX_ABS_B, MAX_D = 20.0, 20.0, 2.0  # sanity bounds of item parameters (ItemPool.from_frame)


class PoolError(ValueError):
    """An item pool failed validation; the message names the field and the rows."""


@dataclass(frozen=True, eq=False)
class ItemPool:
    """A validated, immutable pool of IRT items: dichotomous (3PL parameterisation, 1PL/2PL as
    special cases) and, in a mixed pool, polytomous items (GRM or GPCM, see :mod:`qbank.polytomous`).

    Attributes
    ----------
    item_id : ndarray of shape (n_items,), dtype object (str)
    a, b, c, D : ndarray of shape (n_items,), float
        For a polytomous item ``b`` is its location, the mean of its thresholds, and ``c = 0``.
    topic : ndarray of shape (n_items,), dtype object (str), or None
    name : str
        A label for reports and bundles (usually the file stem).
    item_model : ndarray of shape (n_items,), int8, or None
        :data:`~qbank.polytomous.DICHOTOMOUS`, ``GRM`` or ``GPCM`` per item; None when every item
        is dichotomous.
    thresholds : ndarray of shape (n_items, M - 1), float, or None
        Category thresholds ``b1 .. b{m-1}`` of the polytomous items, NaN past an item's last
        category and for dichotomous items; None when every item is dichotomous.
    """

    item_id: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    D: np.ndarray
    topic: np.ndarray | None = None
    name: str = "pool"
    item_model: np.ndarray | None = None
    thresholds: np.ndarray | None = None
    _index: dict = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {k: i for i, k in enumerate(self.item_id)})
        for arr in (
            self.item_id,
            self.a,
            self.b,
            self.c,
            self.D,
            self.topic,
            self.item_model,
            self.thresholds,
        ):
            if arr is not None:
                arr.setflags(write=False)

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

        item_model, thresholds = _categories_from_frame(frame, item_id, source)
        polytomous = item_model != DICHOTOMOUS
        if polytomous.any():  # a polytomous item's b is its location, the mean of its thresholds
            frame = frame.copy()
            location = np.nanmean(np.where(polytomous[:, None], thresholds, np.nan)[polytomous], axis=1)
            frame.loc[polytomous, "b"] = location
            c_given = pd.to_numeric(frame["c"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            bad_c = polytomous & ~np.isnan(c_given) & (c_given != 0)
            if bad_c.any():
                raise PoolError(
                    f"{source}: column 'c' must be 0 or empty for a GRM/GPCM item; bad items: "
                    f"{shown(item_id[bad_c])}"
                )
            frame.loc[polytomous, "c"] = 0.0

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
        if not polytomous.any():
            item_model = thresholds = None
        return cls(
            item_id, values["a"], values["b"], values["c"], values["D"], topic, name, item_model, thresholds
        )

    @classmethod
    def from_arrays(
        cls, a, b, c=None, D=1.0, item_id=None, topic=None, name="pool", model=None, thresholds=None
    ) -> ItemPool:
        """Build a pool from parameter arrays (validated like a file).

        ``model`` (names per item: '', '3PL', 'GRM', 'GPCM') and ``thresholds`` (shape
        ``(n_items, M - 1)``, NaN-padded) describe polytomous items; their ``b`` may be NaN
        (it becomes the mean of the thresholds).
        """
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
        if model is not None:
            frame["model"] = list(model)
            thresholds = np.atleast_2d(np.asarray(thresholds, dtype=float))
            for k in range(thresholds.shape[1]):
                frame[f"b{k + 1}"] = thresholds[:, k]
        return cls.from_frame(frame, name=name)

    # ------------------------------------------------------------------ views
    @property
    def n_items(self) -> int:
        return int(self.a.shape[0])

    def __len__(self) -> int:
        return self.n_items

    @property
    def is_polytomous(self) -> bool:
        """Whether any item is scored in more than two categories' model (GRM or GPCM)."""
        return self.item_model is not None

    @property
    def n_categories(self) -> np.ndarray:
        """Number of score categories of each item (2 for a dichotomous item), shape (n_items,)."""
        if self.thresholds is None:
            return np.full(self.n_items, 2, dtype=np.intp)
        return np.maximum(np.sum(~np.isnan(self.thresholds), axis=1) + 1, 2).astype(np.intp)

    @property
    def model_codes(self) -> np.ndarray:
        """Model code of each item (all ``DICHOTOMOUS`` in a dichotomous pool), shape (n_items,)."""
        if self.item_model is None:
            return np.zeros(self.n_items, dtype=np.int8)
        return self.item_model

    @property
    def threshold_table(self) -> np.ndarray:
        """Thresholds of shape (n_items, M - 1), all NaN (one column) in a dichotomous pool."""
        if self.thresholds is None:
            return np.full((self.n_items, 1), np.nan)
        return self.thresholds

    @property
    def model(self) -> str:
        """'1PL', '2PL' or '3PL': the simplest model that describes every item; 'GRM' or 'GPCM'
        when every item is of that model, 'mixed' for any other pool with polytomous items."""
        if self.item_model is not None:
            kinds = set(np.unique(self.item_model).tolist())
            return MODEL_NAMES[kinds.pop()] if len(kinds) == 1 else "mixed"
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
        item_model = thresholds = None
        if self.item_model is not None and np.any(self.item_model[positions] != DICHOTOMOUS):
            item_model = self.item_model[positions].copy()
            thresholds = self.thresholds[positions].copy()
            used = ~np.all(np.isnan(thresholds), axis=0)
            thresholds = thresholds[:, : int(np.flatnonzero(used).max()) + 1]
        return ItemPool(
            self.item_id[positions].copy(),
            self.a[positions].copy(),
            self.b[positions].copy(),
            self.c[positions].copy(),
            self.D[positions].copy(),
            topic,
            self.name,
            item_model,
            thresholds,
        )

    def to_frame(self) -> pd.DataFrame:
        """Columns ``item_id, a, b, c, D`` (+ ``topic``); a pool with polytomous items adds
        ``model`` (empty for dichotomous items) and ``b1 .. b{M-1}``."""
        frame = pd.DataFrame({"item_id": self.item_id, "a": self.a, "b": self.b, "c": self.c, "D": self.D})
        if self.topic is not None:
            frame["topic"] = self.topic
        if self.item_model is not None:
            names = np.array(["", "GRM", "GPCM"], dtype=object)
            frame["model"] = names[self.item_model]
            for k in range(self.thresholds.shape[1]):
                frame[f"b{k + 1}"] = self.thresholds[:, k]
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
        if self.item_model is not None:  # dichotomous items keep the checksum they always had
            for row, code, steps in zip(payload, self.item_model, self.thresholds):
                if code != DICHOTOMOUS:
                    row += [MODEL_NAMES[code], [round(float(t), 9) for t in steps if not np.isnan(t)]]
        digest = hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()
        object.__setattr__(self, "_sha256", digest)
        return digest


def threshold_columns(frame: pd.DataFrame) -> list[str]:
    """A pool frame's threshold columns ``b1, b2, ...`` in order (a gap ends the list)."""
    columns, k = [], 1
    while f"b{k}" in frame.columns:
        columns.append(f"b{k}")
        k += 1
    return columns


def _categories_from_frame(frame: pd.DataFrame, item_id, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Model codes and NaN-padded thresholds from the optional ``model`` and ``b1 ..`` columns.

    Raises
    ------
    PoolError
        Unknown model; thresholds on a dichotomous item; a GRM/GPCM item with fewer than 2
        categories, a gap or a non-finite threshold; disordered GRM thresholds.
    """
    n = len(frame)
    columns = threshold_columns(frame)
    if "model" not in frame.columns:
        if columns:
            raise PoolError(
                f"{source}: columns {columns} need a 'model' column (GRM or GPCM) to say which items use them"
            )
        return np.zeros(n, dtype=np.int8), np.full((n, 1), np.nan)
    names = frame["model"].fillna("").astype(str).str.strip().str.upper()
    unknown = ~names.isin(list(MODEL_CODES))
    if unknown.any():
        raise PoolError(
            f"{source}: column 'model' must be empty, 1PL, 2PL, 3PL, GRM or GPCM; bad items: "
            f"{shown(item_id[unknown.to_numpy()])}"
        )
    codes = names.map(MODEL_CODES).to_numpy(dtype=np.int8)
    polytomous = codes != DICHOTOMOUS
    if not columns:
        if polytomous.any():
            raise PoolError(
                f"{source}: a GRM/GPCM item needs at least 2 categories, thresholds in columns b1, b2, ...; "
                f"bad items: {shown(item_id[polytomous])}"
            )
        return codes, np.full((n, 1), np.nan)
    raw = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    given = (
        frame[columns].notna().to_numpy()
        & (frame[columns].astype(str).apply(lambda s: s.str.strip()) != "").to_numpy()
    )
    checks = [
        (given.any(axis=1) & ~polytomous, "thresholds b1, b2, ... are only for GRM/GPCM items (set 'model')"),
        (
            polytomous & (given & ~np.isfinite(raw)).any(axis=1),
            "thresholds b1, b2, ... must be finite numbers",
        ),
        (polytomous & ~given[:, 0], "a GRM/GPCM item needs at least 2 categories (a threshold in b1)"),
        (
            polytomous & (np.diff(given.astype(np.int8), axis=1) > 0).any(axis=1),
            "thresholds must fill b1, b2, ... without gaps",
        ),
        (
            polytomous & (np.abs(np.where(given, raw, 0.0)) > MAX_ABS_B).any(axis=1),
            f"thresholds must be in [-{MAX_ABS_B:g}, {MAX_ABS_B:g}]",
        ),
    ]
    for bad, message in checks:
        if bad.any():
            raise PoolError(f"{source}: {message}; bad items: {shown(item_id[bad])}")
    thresholds = np.where(given & polytomous[:, None], raw, np.nan)
    with np.errstate(invalid="ignore"):
        disordered = (codes == GRM) & (np.diff(thresholds, axis=1) <= 0).any(axis=1)
    if disordered.any():
        raise PoolError(
            f"{source}: GRM thresholds must increase (b1 < b2 < ...); disordered items: {shown(item_id[disordered])}"
        )
    used = ~np.all(np.isnan(thresholds), axis=0)
    width = int(np.flatnonzero(used).max()) + 1 if used.any() else 1
    return codes, thresholds[:, :width]


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
    polytomous_share=0.0,
    polytomous_model="GRM",
    n_categories=4,
) -> ItemPool:
    """Draw a synthetic pool: ``a ~ U(a_range)``, ``b ~ N(b_mean, b_sd)``, ``c ~ U(c_range)``.

    ``model='2PL'`` sets ``c = 0``; ``'1PL'`` also sets ``a = 1``. ``topics`` (a list of
    names) assigns topics round-robin in a shuffled order. ``polytomous_share`` of the items
    (drawn at random) become ``polytomous_model`` ('GRM' or 'GPCM') items with ``n_categories``
    categories: thresholds ``b + sorted(N(0, 1))`` spread around the item's drawn ``b`` (sorted for
    the GRM, whose thresholds must increase; the GPCM's keep their order of draw, reversals
    included). With the default share 0 the draws, and the pool, are those of earlier versions.
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
    if polytomous_share <= 0:
        return ItemPool.from_arrays(a, b, c, D=D, topic=topic, name=name)
    if polytomous_model.upper() not in {"GRM", "GPCM"} or n_categories < 2:
        raise PoolError(
            f"polytomous_model must be GRM or GPCM with n_categories >= 2, got {polytomous_model!r}, {n_categories}"
        )
    chosen = np.zeros(n_items, dtype=bool)
    chosen[rng.choice(n_items, round(polytomous_share * n_items), replace=False)] = True
    offsets = rng.normal(0.0, 1.0, (n_items, n_categories - 1))
    if polytomous_model.upper() == "GRM":
        offsets = np.sort(offsets, axis=1)
    offsets -= offsets.mean(axis=1, keepdims=True)
    thresholds = np.where(chosen[:, None], b[:, None] + offsets, np.nan)
    names = np.where(chosen, polytomous_model.upper(), "")
    c = np.where(chosen, 0.0, c)
    return ItemPool.from_arrays(a, b, c, D=D, topic=topic, name=name, model=names, thresholds=thresholds)
