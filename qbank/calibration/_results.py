"""From a finished EM run to the report: item table with standard errors and flags, the
calibrated pool (dichotomous and polytomous items, fixed items carried over), and the summary."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qbank import polytomous
from qbank._messages import shown
from qbank.calibration import _em
from qbank.calibration._data import CalibrationWarning, ResponseMatrix
from qbank.calibration._em_poly import LOG_GAP
from qbank.calibration._report import CalibrationReport
from qbank.pool import ItemPool, threshold_columns

_BOUND_TOLERANCE = 1e-6


@dataclass
class FitState:
    """Everything a fit produced that the report needs.

    Per-item arrays follow the order of ``free`` (the estimated items); ``thresholds`` and
    ``se_thresholds`` have shape (n_free, S), NaN for dichotomous items and past an item's last
    threshold; ``se`` has shape (n_free, 3) for ``(log a, b, c)``, ``b`` a polytomous item's location.
    """

    model: str
    dichotomous_model: str | None
    priors: _em.Priors
    theta: np.ndarray
    data: ResponseMatrix
    free: ResponseMatrix
    fixed_mask: np.ndarray
    pool: ItemPool | None
    x: np.ndarray  # (n_free, 3): log a, b (location), c
    item_model: np.ndarray  # (n_free,) model codes of qbank.polytomous
    thresholds: np.ndarray
    se: np.ndarray
    se_thresholds: np.ndarray
    estimated: np.ndarray  # (n_free, 3) bool: which of log a, b, c were estimated
    se_method: str
    log_weights: np.ndarray
    trace: np.ndarray
    converged: bool
    last_change: float
    marginal: float
    log_prior: float
    dropped: list
    n_empty_persons: int
    started: float
    latent: str
    tol: float
    se_b_limit: float | None


def _bound_hits(state: FitState) -> np.ndarray:
    x = state.x
    lower, upper = _em.BOUNDS[:, 0], _em.BOUNDS[:, 1]
    hit = state.estimated & ((x <= lower + _BOUND_TOLERANCE) | (x >= upper - _BOUND_TOLERANCE))
    hit[:, _em.C] &= x[:, _em.C] >= upper[_em.C] - _BOUND_TOLERANCE  # c = 0 is a legitimate estimate
    poly = state.item_model != polytomous.DICHOTOMOUS
    with np.errstate(invalid="ignore"):
        edge = (np.abs(state.thresholds) >= upper[_em.B] - _BOUND_TOLERANCE).any(axis=1)
        # GRM thresholds pressed together at the smallest gap the parameterisation allows.
        collapsed = (np.diff(state.thresholds, axis=1) <= np.exp(LOG_GAP[0]) * (1 + 1e-3)).any(axis=1)
    edge |= collapsed & (state.item_model == polytomous.GRM)
    hit[poly, _em.B] = edge[poly]
    return hit.any(axis=1)


def build_report(state: FitState) -> CalibrationReport:
    """The :class:`CalibrationReport` of a fit; warns about items at a bound or poorly determined."""
    x, free = state.x, state.free
    a, b, c = np.exp(x[:, _em.LOGA]), x[:, _em.B], x[:, _em.C]
    poly = state.item_model != polytomous.DICHOTOMOUS
    n_answered, score_sum = free.item_counts()
    top = np.where(poly, np.sum(~np.isnan(state.thresholds), axis=1), 1)
    at_bound = _bound_hits(state)
    se = state.se
    with np.errstate(invalid="ignore"):
        # A NaN standard error (a singular information block) is no evidence of precision either.
        imprecise = (
            ~(se[:, _em.B] <= state.se_b_limit) if state.se_b_limit is not None else np.zeros_like(at_bound)
        )
    poorly_determined = at_bound | imprecise
    items = pd.DataFrame(
        {
            "item_id": free.item_id.astype(str),
            "a": a,
            "b": b,
            "c": c,
            "D": 1.0,
            "se_a": a * se[:, _em.LOGA],
            "se_b": se[:, _em.B],
            "se_c": se[:, _em.C],
            "n": n_answered.astype(np.int64),
            # For an item scored 0..m-1: the mean score over the maximum score.
            "p_correct": score_sum / n_answered / top,
            "fixed": False,
            "at_bound": at_bound,
            "poorly_determined": poorly_determined,
        }
    )
    n_steps = state.thresholds.shape[1]
    has_poly = bool(poly.any()) or (state.pool is not None and state.pool.is_polytomous)
    if has_poly:
        items.insert(1, "model", _model_names(state.item_model, state.dichotomous_model))
        for k in range(n_steps):
            items[f"b{k + 1}"] = state.thresholds[:, k]
        for k in range(n_steps):
            items[f"se_b{k + 1}"] = state.se_thresholds[:, k]
    _warn(state, at_bound, imprecise, b, se)
    topic = None
    pool = state.pool
    if pool is not None:
        bank = _bank_rows(state, has_poly)
        items = pd.concat([bank, items], ignore_index=True)
        if pool.topic is not None:
            topic = np.concatenate([pool.topic.astype(object), np.full(free.n_items, "", dtype=object)])
    items = items.set_index("item_id")
    out_pool = ItemPool.from_arrays(
        items["a"].to_numpy(),
        np.where(items["model"].isin(["GRM", "GPCM"]), np.nan, items["b"])
        if has_poly
        else items["b"].to_numpy(),
        items["c"].to_numpy(),
        D=1.0,
        item_id=items.index.to_numpy(),
        topic=topic,
        name="calibrated",
        model=items["model"].to_numpy() if has_poly else None,
        thresholds=items[threshold_columns(items)].to_numpy(dtype=float) if has_poly else None,
    )
    return CalibrationReport(out_pool, items, _summary(state, poorly_determined), _latent(state), state.trace)


def _model_names(codes, dichotomous_model) -> np.ndarray:
    names = np.array(["", "GRM", "GPCM"], dtype=object)[codes]
    # A pool file names Rasch items 1PL (a = 1 is a 1PL item).
    names[codes == polytomous.DICHOTOMOUS] = {"Rasch": "1PL"}.get(dichotomous_model, dichotomous_model)
    return names


def _bank_rows(state: FitState, has_poly: bool) -> pd.DataFrame:
    pool, data = state.pool, state.data
    n_fixed, fixed_sum = data.select(items=state.fixed_mask).item_counts()
    counts = dict(zip(data.item_id[state.fixed_mask], zip(n_fixed, fixed_sum)))
    top = pool.n_categories - 1
    bank = pd.DataFrame(
        {
            "item_id": pool.item_id.astype(str),
            "a": pool.a * pool.D,
            "b": pool.b,
            "c": pool.c,
            "D": 1.0,
            "se_a": np.nan,
            "se_b": np.nan,
            "se_c": np.nan,
            "n": [int(counts.get(i, (0, 0))[0]) for i in pool.item_id],
            "p_correct": [
                counts[i][1] / counts[i][0] / t if i in counts else np.nan for i, t in zip(pool.item_id, top)
            ],
            "fixed": True,
            "at_bound": False,
            "poorly_determined": False,
        }
    )
    if has_poly:
        names = np.array(["", "GRM", "GPCM"], dtype=object)[pool.model_codes]
        names[pool.model_codes == polytomous.DICHOTOMOUS] = "3PL"
        bank.insert(1, "model", names)
        table = pool.threshold_table
        for k in range(max(table.shape[1], state.thresholds.shape[1])):
            bank[f"b{k + 1}"] = table[:, k] if k < table.shape[1] else np.nan
    return bank


def _warn(state: FitState, at_bound, imprecise, b, se):
    free = state.free
    if at_bound.any():
        warnings.warn(
            f"{at_bound.sum()} item(s) ended at a bound of (log a, b, c) {_em.BOUNDS.round(3).tolist()}, so the "
            f"data do not determine them (see se_b): {shown(free.item_id[at_bound])}; typical on adaptive data "
            "for an item given only to low-ability examinees, whose answers a c prior can explain as guessing; "
            "try a weaker prior_c or the 2PL",
            CalibrationWarning,
            stacklevel=5,
        )
    imprecise = imprecise & ~at_bound
    if imprecise.any():
        named = [
            f"{item} (b {value:.2f}, se_b {error:.2f})"
            for item, value, error in zip(free.item_id[imprecise], b[imprecise], se[imprecise, _em.B])
        ]
        warnings.warn(
            f"{imprecise.sum()} item(s) have se_b > se_b_limit={state.se_b_limit}, so the data hardly place "
            f"their difficulty: {shown(named)}; typical of an item far from most of the examinees who took it (on "
            "adaptive data, one given only to examinees far below or above it), whose estimate can be off by "
            "more than a logit; collect responses near its difficulty (e.g. pretest it on a random sample) "
            "before relying on it",
            CalibrationWarning,
            stacklevel=5,
        )


def _latent(state: FitState) -> pd.DataFrame:
    weights = np.exp(state.log_weights)
    return pd.DataFrame({"theta": state.theta, "weight": weights / weights.sum()})


def _summary(state: FitState, poorly_determined) -> dict:
    priors, theta, data, pool = state.priors, state.theta, state.data, state.pool
    weights = np.exp(state.log_weights)
    weights /= weights.sum()
    latent_mean = float(weights @ theta)
    latent_sd = float(np.sqrt(max(weights @ theta**2 - latent_mean**2, 0.0)))
    poly = state.item_model != polytomous.DICHOTOMOUS
    summary = {
        "model": state.model,
        "method": "Bock-Aitkin MML-EM" + (" with fixed items (Kim 2006 MWU-MEM)" if pool is not None else ""),
        "priors": {
            "loga": priors.loga,
            "b": priors.b,
            "c": priors.c,
            "hierarchical": [
                name
                for name, hyper in (("loga", priors.loga_hyper), ("b", priors.b_hyper))
                if hyper is not None
            ],
        },
        "n_persons": data.n_persons,
        "n_persons_without_responses": state.n_empty_persons,
        "n_items_estimated": int(state.free.n_items),
        "n_items_fixed": 0 if pool is None else int(pool.n_items),
        "n_responses": int(data.n_responses),
        "dropped_items": state.dropped,
        "se_b_limit": state.se_b_limit,
        "n_items_poorly_determined": int(poorly_determined.sum()),
        "iterations": len(state.trace),
        "converged": bool(state.converged),
        "tol": float(state.tol),
        "last_max_change": float(state.last_change),
        "log_likelihood": float(state.marginal),
        "log_posterior": float(state.marginal + state.log_prior),
        "latent_estimated": None if pool is None else state.latent,
        "latent_mean": latent_mean,
        "latent_sd": latent_sd,
        "n_quad": int(theta.size),
        "theta_range": [float(theta[0]), float(theta[-1])],
        "se_method": state.se_method,
        "storage": "sparse" if data.is_sparse else "dense",
    }
    if state.model in ("GRM", "GPCM"):
        summary["dichotomous_model"] = state.dichotomous_model if (~poly).any() else None
        summary["n_items_polytomous"] = int(poly.sum())
        summary["polytomous_items"] = {
            str(item): int(m)
            for item, m in zip(state.free.item_id[poly], np.sum(~np.isnan(state.thresholds[poly]), 1) + 1)
        }
    summary["seconds"] = time.perf_counter() - state.started
    return summary
