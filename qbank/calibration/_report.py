"""The report of a calibration: item estimates with standard errors and flags, summary,
latent distribution and trace; written as JSON next to the calibrated pool."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qbank.calibration._data import CalibrationError
from qbank.pool import ItemPool, save_pool

__all__ = ["CalibrationReport"]


@dataclass
class CalibrationReport:
    """What a calibration produced.

    Attributes
    ----------
    pool : ItemPool
        Calibrated items (plus, in fixed-parameter calibration, the fixed items unchanged),
        logistic metric ``D = 1``.
    items : DataFrame indexed by item_id
        ``a, b, c, D, se_a, se_b, se_c, n, p_correct, fixed, at_bound, poorly_determined``; an SE
        is NaN exactly where the parameter was not estimated (fixed item, ``c`` of a 2PL, ...);
        ``poorly_determined`` marks estimated items at a bound or with ``se_b`` above the
        Calibrator's ``se_b_limit``. When the run or its fixed pool has GRM/GPCM items, also
        ``model`` and the thresholds ``b1, b2, ...`` with ``se_b1, se_b2, ...`` (NaN for dichotomous
        items); for those items ``b`` is the location (mean of the thresholds), ``se_b`` its SE,
        ``c = 0`` and ``p_correct`` the mean score over the top score.
    summary : dict
        Model, priors, counts, iterations, convergence, log-likelihood, latent mean and sd, seconds;
        for a GRM/GPCM run also ``dichotomous_model``, ``n_items_polytomous`` and
        ``polytomous_items`` (item id: number of categories).
    latent : DataFrame
        ``theta, weight``: the latent distribution on the quadrature grid (N(0, 1) unless estimated).
    log_likelihood_trace : ndarray of shape (n_iterations,)
        Marginal log-likelihood at the start of every EM cycle.
    """

    pool: ItemPool
    items: pd.DataFrame
    summary: dict
    latent: pd.DataFrame
    log_likelihood_trace: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        items = self.items.reset_index().astype(object).where(self.items.reset_index().notna(), None)
        return {
            "summary": self.summary,
            "items": items.to_dict(orient="records"),
            "latent": self.latent.to_dict(orient="list"),
            "log_likelihood_trace": [float(v) for v in self.log_likelihood_trace],
        }

    def to_json(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))
        return path

    @staticmethod
    def read_items(path) -> pd.DataFrame:
        """The ``items`` table of a report written by :meth:`to_json` (or :meth:`save`), indexed by item_id.

        Raises
        ------
        CalibrationError
            The file is missing or unreadable, or see :meth:`items_from_json`.
        """
        path = Path(path)
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            raise CalibrationError(f"{path}: no such calibration report") from None
        except OSError as exc:
            raise CalibrationError(f"{path}: not a readable calibration report ({exc})") from None
        return CalibrationReport.items_from_json(content, str(path))

    @staticmethod
    def items_from_json(content: str | bytes, source: str = "report") -> pd.DataFrame:
        """The ``items`` table of a report's JSON text (:meth:`to_json`), indexed by item_id.

        Raises
        ------
        CalibrationError
            Not JSON, no non-empty ``items`` list of records, or items without ``item_id, a, b, c,
            n`` and ``poorly_determined`` (a report from before that flag names the missing column).
        """
        try:
            document = json.loads(content)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"{source}: not a readable calibration report ({exc})") from None
        rows = document.get("items") if isinstance(document, dict) else None
        if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
            raise CalibrationError(
                f"{source}: a calibration report needs a non-empty 'items' list of records"
            )
        items = pd.DataFrame(rows)
        missing = [c for c in ("item_id", "a", "b", "c", "n", "poorly_determined") if c not in items.columns]
        if missing:
            raise CalibrationError(
                f"{source}: the report's items lack column(s) {missing}; re-run qbank calibrate"
            )
        items["item_id"] = items["item_id"].astype(str)
        items["poorly_determined"] = items["poorly_determined"].fillna(False).astype(bool)
        return items.set_index("item_id")

    def save(self, pool_path) -> dict:
        """Write the pool (CSV or Parquet by extension) and ``<stem>.report.json`` beside it."""
        pool_path = Path(pool_path)
        report_path = pool_path.with_name(pool_path.stem + ".report.json")
        return {"pool": save_pool(self.pool, pool_path), "report": self.to_json(report_path)}


def _json_default(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")
