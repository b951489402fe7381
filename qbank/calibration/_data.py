"""Response data for calibration: wide or long input, validated once, stored dense or sparse.

Two matrices of shape ``(n_persons, n_items)`` carry everything the EM needs: ``answered``
(1 where a response exists) and ``score`` (the category scored, ``0 .. m-1``; 1 where a
dichotomous answer is correct). Missing responses are zeros in both, so they drop out of every likelihood product instead of being
imputed. Small or dense data are kept as numpy arrays (BLAS products); sparse logs such as CAT
data from the delivery service are kept as ``scipy.sparse`` CSR matrices.

Long logs (``person_id, item_id, response``; what the service writes) are read and checked
through DuckDB, so a multi-million-row CSV or Parquet file never passes through a pandas
parser row by row.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from qbank._messages import SHOWN, shown
from qbank.pool import ItemPool, PoolError, load_pool

__all__ = [
    "LONG_COLUMNS",
    "CalibrationError",
    "CalibrationWarning",
    "ResponseMatrix",
    "drop_invariant",
    "fixed_items",
    "read_responses",
]

LONG_COLUMNS = ("person_id", "item_id", "response")
_DENSE_MAX_CELLS = 4_000_000  # below this many person x item cells dense BLAS beats sparse products
_DENSE_MIN_DENSITY = 0.3
_MISSING_MARKERS = ("", "nan", "na", "null", "none")
MAX_SCORE = 20  # categories 0..20; more is a data error (e.g. a percentage), not an item


class CalibrationError(ValueError):
    """Calibration input or settings are invalid; the message names the field, items or rows."""


@dataclass(frozen=True, eq=False)
class ResponseMatrix:
    """Validated item scores of persons: 0/1 for dichotomous items, ``0 .. m-1`` for items
    scored in ``m`` ordered categories.

    Attributes
    ----------
    person_id : ndarray of shape (n_persons,), dtype object (str)
    item_id : ndarray of shape (n_items,), dtype object (str)
    answered : ndarray or scipy.sparse.csr_matrix of shape (n_persons, n_items), float
        1.0 where the person answered the item, else 0.0.
    score : same type and shape as ``answered``
        The category scored (1.0 where a dichotomous answer is correct), 0.0 where not answered.
    """

    person_id: np.ndarray
    item_id: np.ndarray
    answered: np.ndarray | sparse.csr_matrix
    score: np.ndarray | sparse.csr_matrix

    # ------------------------------------------------------------------ views
    @property
    def n_persons(self) -> int:
        return int(self.answered.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.answered.shape[1])

    @property
    def is_sparse(self) -> bool:
        return sparse.issparse(self.answered)

    @property
    def n_responses(self) -> int:
        return int(self.answered.sum())

    def item_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Responses and summed scores (correct responses) per item, each of shape (n_items,)."""
        return (np.asarray(self.answered.sum(axis=0)).ravel(), np.asarray(self.score.sum(axis=0)).ravel())

    def person_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Responses and summed scores per person, each of shape (n_persons,)."""
        return (np.asarray(self.answered.sum(axis=1)).ravel(), np.asarray(self.score.sum(axis=1)).ravel())

    def cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and integer score of every answered cell, each of shape (n_responses,)."""
        rows, cols = self.answered.nonzero()
        return rows, cols, np.asarray(self.score[rows, cols]).ravel().astype(np.intp)

    def category_counts(self) -> np.ndarray:
        """Responses in each category ``0 .. M-1`` per item, shape (n_items, M) with ``M >= 2``."""
        _, cols, y = self.cells()
        width = max(int(y.max(initial=0)) + 1, 2)
        return np.bincount(cols * width + y, minlength=self.n_items * width).reshape(self.n_items, width)

    def to_dense(self) -> np.ndarray:
        """Responses as floats of shape (n_persons, n_items): 1, 0 or NaN (not answered)."""
        answered = self.answered.toarray() if self.is_sparse else self.answered
        score = self.score.toarray() if self.is_sparse else self.score
        return np.where(answered > 0, score, np.nan)

    def to_long(self) -> pd.DataFrame:
        """Responses in long format ``person_id, item_id, response`` (answered cells only)."""
        answered = sparse.coo_matrix(self.answered)
        score = sparse.csr_matrix(self.score)
        rows, cols = answered.row, answered.col
        return pd.DataFrame(
            {
                "person_id": self.person_id[rows],
                "item_id": self.item_id[cols],
                "response": np.asarray(score[rows, cols]).ravel().astype(np.int8),
            }
        )

    # ------------------------------------------------------------------ reshaping
    def select(self, persons=None, items=None) -> ResponseMatrix:
        """Rows ``persons`` and columns ``items`` (position arrays or boolean masks)."""
        persons = np.arange(self.n_persons) if persons is None else np.asarray(persons)
        items = np.arange(self.n_items) if items is None else np.asarray(items)
        if persons.dtype == bool:
            persons = np.flatnonzero(persons)
        if items.dtype == bool:
            items = np.flatnonzero(items)
        answered = self.answered[persons][:, items]
        score = self.score[persons][:, items]
        return ResponseMatrix(self.person_id[persons], self.item_id[items], answered, score)

    def with_storage(self, kind: str) -> ResponseMatrix:
        """The same responses stored ``'dense'`` or ``'sparse'`` (CSR)."""
        if kind == "sparse":
            return ResponseMatrix(
                self.person_id,
                self.item_id,
                sparse.csr_matrix(self.answered),
                sparse.csr_matrix(self.score),
            )
        if kind == "dense":
            to_array = (lambda m: m.toarray()) if self.is_sparse else np.asarray
            return ResponseMatrix(self.person_id, self.item_id, to_array(self.answered), to_array(self.score))
        raise CalibrationError(f"storage must be 'dense' or 'sparse', got {kind!r}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_codes(cls, person_code, item_code, response, person_id, item_id) -> ResponseMatrix:
        """Build from integer codes of answered cells (validation assumed: scores 0, 1, ..., no duplicates).

        Parameters
        ----------
        person_code, item_code : ndarray of shape (n_responses,), int
            Row and column of each response.
        response : ndarray of shape (n_responses,)
            Scores 0, 1, 2, ...
        person_id : ndarray of shape (n_persons,)
        item_id : ndarray of shape (n_items,)
        """
        shape = (len(person_id), len(item_id))
        ones = np.ones(len(response))
        answered = sparse.csr_matrix((ones, (person_code, item_code)), shape=shape)
        score = sparse.csr_matrix((np.asarray(response, dtype=float), (person_code, item_code)), shape=shape)
        score.eliminate_zeros()
        data = cls(np.asarray(person_id, dtype=object), np.asarray(item_id, dtype=object), answered, score)
        cells = shape[0] * shape[1]
        density = len(response) / cells if cells else 1.0
        dense = cells <= _DENSE_MAX_CELLS or (
            density >= _DENSE_MIN_DENSITY and cells <= 25 * _DENSE_MAX_CELLS
        )
        return data.with_storage("dense") if dense else data

    @classmethod
    def from_wide(cls, data, item_id=None, person_id=None) -> ResponseMatrix:
        """Validate a person x item table: a score 0, 1, 2, ... or missing (NaN, None, empty) in every cell.

        Parameters
        ----------
        data : DataFrame or array_like of shape (n_persons, n_items)
            A DataFrame's columns are the item ids; a ``person_id`` column, if present, gives
            the person ids, else the index does.
        item_id, person_id : array_like, optional
            Ids for array input (default ``I0001...`` and ``0, 1, ...``).

        Raises
        ------
        CalibrationError
            A cell that is not an integer >= 0 or missing (naming person, item and value), duplicate ids.
        """
        if isinstance(data, pd.DataFrame):
            frame = data
            if "person_id" in frame.columns:
                frame = frame.set_index("person_id")
            persons = frame.index.astype(str).to_numpy(dtype=object) if person_id is None else person_id
            items = frame.columns.astype(str).to_numpy(dtype=object) if item_id is None else item_id
            raw = frame.to_numpy(dtype=object)
        else:
            raw = np.asarray(data)
            if raw.ndim != 2:
                raise CalibrationError(f"wide responses must be 2-D (persons x items), got shape {raw.shape}")
            items = [f"I{j + 1:04d}" for j in range(raw.shape[1])] if item_id is None else item_id
            persons = np.arange(raw.shape[0]).astype(str) if person_id is None else person_id
        items = np.asarray([str(x) for x in items], dtype=object)
        persons = np.asarray([str(x) for x in persons], dtype=object)
        if raw.shape != (len(persons), len(items)):
            raise CalibrationError(
                f"responses have shape {raw.shape} but {len(persons)} person ids and {len(items)} item ids"
            )
        for name, ids in (("item_id", items), ("person_id", persons)):
            dup = pd.Series(ids).duplicated(keep=False).to_numpy()
            if dup.any():
                raise CalibrationError(f"duplicate {name} in the responses: {shown(sorted(set(ids[dup])))}")

        values = _numeric_cells(raw)
        missing = np.isnan(values)
        with np.errstate(invalid="ignore"):
            bad = (
                ~missing & ((values < 0.0) | (values != np.floor(values)) | (values > MAX_SCORE))
            ) | _unparsable(raw, values)
        if bad.any():
            rows, cols = np.nonzero(bad)
            cells = [(persons[r], items[c], raw[r, c]) for r, c in zip(rows[:SHOWN], cols[:SHOWN])]
            raise CalibrationError(
                f"responses must be integer scores 0..{MAX_SCORE} (1/0 for dichotomous items) or missing; {bad.sum()} bad cell(s) as (person_id, item_id, value): "
                f"{cells}"
            )
        rows, cols = np.nonzero(~missing)
        return cls.from_codes(rows, cols, values[rows, cols], persons, items)

    @classmethod
    def from_long(cls, frame: pd.DataFrame) -> ResponseMatrix:
        """Validate long responses ``person_id, item_id, response`` held in a DataFrame.

        Rows with a missing response are not-administered cells; persons and items come out in
        sorted id order. See :func:`read_responses`.
        """
        import duckdb

        con = duckdb.connect()
        try:
            con.register("responses_frame", frame)
            return _from_long_relation(con, "responses_frame", list(frame.columns), "responses")
        finally:
            con.close()


def _numeric_cells(raw: np.ndarray) -> np.ndarray:
    """Cells as floats; booleans become 1/0, unparsable text becomes NaN (flagged separately)."""
    if raw.dtype.kind in "biuf":
        return raw.astype(float)
    flat = pd.to_numeric(pd.Series(raw.ravel()).replace({True: 1.0, False: 0.0}), errors="coerce")
    return flat.to_numpy(dtype=float, na_value=np.nan).reshape(raw.shape)


def _unparsable(raw: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Cells that hold something other than a missing marker but did not parse as a number."""
    if raw.dtype.kind in "biuf":
        return np.zeros(raw.shape, dtype=bool)
    flat = pd.Series(raw.ravel())
    text = flat.astype(str).str.strip().str.lower()
    present = flat.notna().to_numpy() & ~text.isin(_MISSING_MARKERS).to_numpy()
    return present.reshape(raw.shape) & np.isnan(values)


def _from_long_relation(con, view: str, columns, source: str) -> ResponseMatrix:
    missing = [c for c in LONG_COLUMNS if c not in columns]
    if missing:
        raise CalibrationError(
            f"{source}: long responses need columns {list(LONG_COLUMNS)}; missing {missing} (found {list(columns)})"
        )
    # Everything is checked in SQL so a large log is scanned by DuckDB, not by Python.
    cast = f"""
        SELECT CAST(person_id AS VARCHAR) AS person_id, CAST(item_id AS VARCHAR) AS item_id,
               CAST(response AS VARCHAR) AS raw, TRY_CAST(response AS DOUBLE) AS value
        FROM {view}"""
    con.execute(f"CREATE TEMP VIEW cast_responses AS {cast}")
    no_id = con.execute(
        "SELECT count(*) FILTER (WHERE person_id IS NULL OR trim(person_id) = ''), "
        "count(*) FILTER (WHERE item_id IS NULL OR trim(item_id) = '') FROM cast_responses"
    ).fetchone()
    if no_id[0] or no_id[1]:
        raise CalibrationError(
            f"{source}: {no_id[0]} row(s) with an empty person_id and {no_id[1]} with an empty item_id"
        )
    markers = ", ".join(f"'{m}'" for m in _MISSING_MARKERS)
    invalid = (
        f"raw IS NOT NULL AND lower(trim(raw)) NOT IN ({markers}) AND NOT isnan(coalesce(value, 0)) "
        f"AND (value IS NULL OR value < 0 OR value <> floor(value) OR value > {MAX_SCORE})"
    )
    bad = con.execute(
        f"SELECT person_id, item_id, raw FROM cast_responses WHERE {invalid} LIMIT 10"
    ).fetchall()
    if bad:
        n_bad = con.execute(f"SELECT count(*) FROM cast_responses WHERE {invalid}").fetchone()[0]
        raise CalibrationError(
            f"{source}: response must be an integer score 0..{MAX_SCORE} (1/0 for dichotomous items) or missing; {n_bad} bad row(s) as (person_id, item_id, response): {bad}"
        )
    con.execute(
        "CREATE TEMP VIEW answered_responses AS SELECT person_id, item_id, value FROM cast_responses "
        "WHERE value IS NOT NULL AND NOT isnan(value)"
    )
    dup = con.execute(
        "SELECT person_id, item_id, count(*) AS n FROM answered_responses GROUP BY person_id, item_id "
        "HAVING count(*) > 1 ORDER BY person_id, item_id LIMIT 10"
    ).fetchall()
    if dup:
        raise CalibrationError(
            f"{source}: a person answered the same item more than once, as (person_id, item_id, times): {dup}"
        )
    columns = con.execute("SELECT person_id, item_id, value FROM answered_responses").fetchnumpy()
    if len(columns["value"]) == 0:
        raise CalibrationError(f"{source}: no answered responses")
    # Sorted codes make the matrix independent of the row order DuckDB's threads return.
    person_code, person_id = pd.factorize(np.asarray(columns["person_id"], dtype=object), sort=True)
    item_code, item_id = pd.factorize(np.asarray(columns["item_id"], dtype=object), sort=True)
    return ResponseMatrix.from_codes(
        person_code,
        item_code,
        np.asarray(columns["value"], dtype=float),
        np.asarray(person_id, dtype=object),
        np.asarray(item_id, dtype=object),
    )


def _read_file(path: Path, format: str) -> ResponseMatrix:
    import duckdb

    if not path.exists():
        raise CalibrationError(f"{path}: no such file")
    parquet = path.suffix.lower() in {".parquet", ".pq"}
    con = duckdb.connect()
    try:
        try:
            if parquet:
                relation = con.read_parquet(str(path))
            else:
                # all_varchar keeps ids such as '007' intact and lets us name unparsable cells.
                relation = con.read_csv(str(path), header=True, all_varchar=True)
            columns = list(relation.columns)
        except duckdb.Error as exc:
            raise CalibrationError(f"{path}: cannot read responses: {exc}") from None
        format = _detect_format(columns, format, str(path))
        if format == "long":
            relation.create_view("responses_file")
            return _from_long_relation(con, "responses_file", columns, str(path))
        frame = relation.df()
    finally:
        con.close()
    try:
        return ResponseMatrix.from_wide(frame)
    except CalibrationError as exc:
        raise CalibrationError(f"{path}: {exc}") from None


def _detect_format(columns, format: str, source: str) -> str:
    if format not in {"auto", "wide", "long"}:
        raise CalibrationError(f"format must be 'auto', 'wide' or 'long', got {format!r}")
    if format == "auto":
        return "long" if set(LONG_COLUMNS) <= set(columns) else "wide"
    return format


def read_responses(source, format: str = "auto") -> ResponseMatrix:
    """Read and validate responses from a file, a DataFrame or an array.

    Parameters
    ----------
    source : str, Path, DataFrame, array_like of shape (n_persons, n_items) or ResponseMatrix
        A CSV/Parquet path or DataFrame, either *long* (columns ``person_id, item_id,
        response``; one row per answer, as the delivery service logs them; responses are scores
        0/1, or 0 .. m-1 for items scored in m ordered categories; absent rows and
        empty responses are not-administered; ids come out sorted) or *wide* (one row per person, one column per
        item, an optional ``person_id`` column; empty cells are not-administered).
    format : {'auto', 'wide', 'long'}
        ``'auto'`` takes long format when the three long columns are present.

    Returns
    -------
    ResponseMatrix

    Raises
    ------
    CalibrationError
        Unreadable file, missing columns, a response other than an integer score >= 0 or missing
        (naming person, item and value), a person answering one item twice, empty ids.
    """
    if isinstance(source, ResponseMatrix):
        return source
    if isinstance(source, (str, Path)):
        return _read_file(Path(source), format)
    if isinstance(source, pd.DataFrame):
        if _detect_format(list(source.columns), format, "responses") == "long":
            return ResponseMatrix.from_long(source)
        return ResponseMatrix.from_wide(source)
    return ResponseMatrix.from_wide(source)


class CalibrationWarning(UserWarning):
    """Something in a calibration deserves a look (non-convergence, dropped or bounded items)."""


def fixed_items(pool, data: ResponseMatrix, model: str):
    """The fixed pool (loaded) and the mask of response items it fixes; warns about its unused items."""
    if pool is None:
        return None, np.zeros(data.n_items, dtype=bool)
    if not isinstance(pool, ItemPool):
        try:
            pool = load_pool(pool)
        except PoolError as exc:
            raise CalibrationError(f"fixed_pool: {exc}") from None
    in_pool = np.isin(data.item_id, pool.item_id)
    if not in_pool.any():
        raise CalibrationError(
            f"fixed_pool: none of its {pool.n_items} item ids occur in the responses "
            f"(pool ids e.g. {shown(pool.item_id, 5)}, response ids e.g. {shown(data.item_id, 5)})"
        )
    if in_pool.all():
        raise CalibrationError(
            "fixed_pool: every item in the responses is fixed; there is nothing to calibrate"
        )
    unused = pool.item_id[~np.isin(pool.item_id, data.item_id)]
    if unused.size:
        warnings.warn(
            f"fixed_pool: {unused.size} item(s) have no responses and are carried over unchanged: {shown(unused)}",
            CalibrationWarning,
            stacklevel=4,
        )
    if model in ("Rasch", "1PL"):
        effective_a = pool.a * pool.D
        if not np.allclose(effective_a, effective_a[0], rtol=1e-6):
            raise CalibrationError(
                "fixed_pool: a 1PL calibration needs a bank with one common D*a; "
                f"this bank has D*a from {effective_a.min():.3g} to {effective_a.max():.3g}"
            )
    return pool, in_pool


def drop_invariant(data: ResponseMatrix, free: np.ndarray, drop: bool):
    """Raise on (or drop) free items with fewer than 2 observed categories (all answers equal);
    returns data, free mask, dropped ids."""
    counts = data.category_counts()
    invariant = free & ((counts > 0).sum(axis=1) < 2)
    if not invariant.any():
        return data, free, []
    described = [
        f"{item} ({'no responses' if row.sum() == 0 else f'all {int(row.argmax())} in {int(row.sum())} responses'})"
        for item, row in zip(data.item_id[invariant], counts[invariant])
    ]
    if not drop:
        raise CalibrationError(
            f"{invariant.sum()} item(s) have no variance (fewer than 2 observed categories), so their parameters "
            f"are not identified: {shown(described)}; remove them or pass drop_invariant=True (--drop-invariant)"
        )
    warnings.warn(
        f"dropped {invariant.sum()} item(s) with no variance: {shown(described)}",
        CalibrationWarning,
        stacklevel=4,
    )
    keep = ~invariant
    return data.select(items=keep), free[keep], [str(i) for i in data.item_id[invariant]]


def polytomous_mask(data: ResponseMatrix, model: str, dichotomous_model: str | None) -> np.ndarray:
    """Which items are calibrated with the polytomous model, shape (n_items,), bool.

    With a dichotomous ``model`` none, and a score above 1 is an error. With ``'GRM'`` or
    ``'GPCM'``: every item when ``dichotomous_model`` is None, else the items with an observed
    score above 1. A polytomous item must have every category ``0 .. m-1`` observed.

    Raises
    ------
    CalibrationError
        Scores above 1 in a dichotomous calibration; a polytomous item with an unobserved category
        (naming the items and categories).
    """
    counts = data.category_counts()
    observed = counts > 0
    top = observed.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1)
    if model not in ("GRM", "GPCM"):
        above = top > 1
        if above.any():
            named = [f"{item} (up to {int(t)})" for item, t in zip(data.item_id[above], top[above])]
            raise CalibrationError(
                f"responses above 1 need a polytomous model (model 'GRM' or 'GPCM', --model GRM|GPCM); "
                f"{above.sum()} item(s) have scores above 1: {shown(named)}"
            )
        return np.zeros(data.n_items, dtype=bool)
    poly = np.ones(data.n_items, dtype=bool) if dichotomous_model is None else top > 1
    gaps = poly[:, None] & ~observed & (np.arange(observed.shape[1])[None, :] <= top[:, None])
    if gaps.any():
        named = [
            f"{item} (categories {np.flatnonzero(row).tolist()} of 0..{int(t)} never observed)"
            for item, row, t in zip(
                data.item_id[gaps.any(axis=1)], gaps[gaps.any(axis=1)], top[gaps.any(axis=1)]
            )
        ]
        raise CalibrationError(
            f"items scored in categories 0..m-1 need every category observed, or its threshold is not identified; "
            f"{gaps.any(axis=1).sum()} item(s) with a gap: {shown(named)}; rescore them without the empty categories"
        )
    return poly


def check_fixed_scores(fixed: ResponseMatrix, pool: ItemPool, positions: np.ndarray) -> None:
    """Raise when a response to a fixed item is above the item's top category in the pool."""
    _, cols, y = fixed.cells()
    top = np.zeros(fixed.n_items, dtype=np.intp)
    np.maximum.at(top, cols, y)
    allowed = pool.n_categories[positions] - 1
    bad = top > allowed
    if bad.any():
        named = [
            f"{item} (score {int(t)}, pool allows 0..{int(m)})"
            for item, t, m in zip(fixed.item_id[bad], top[bad], allowed[bad])
        ]
        raise CalibrationError(
            f"fixed_pool: {bad.sum()} fixed item(s) have responses above their top category in the pool: {shown(named)}"
        )
