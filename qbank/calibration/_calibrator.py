"""Public calibration API: the :class:`Calibrator` estimator, :func:`calibrate` and the report."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from qbank._messages import shown
from qbank.calibration import _em
from qbank.calibration._data import (
    CalibrationError,
    CalibrationWarning,
    drop_invariant,
    fixed_items,
    read_responses,
)
from qbank.calibration._em import Hierarchical
from qbank.calibration._priors import check_prior, log_prior, parse_prior
from qbank.calibration._report import CalibrationReport
from qbank.pool import ItemPool

__all__ = ["MODELS", "CalibrationReport", "CalibrationWarning", "Calibrator", "calibrate", "parse_prior"]

MODELS = ("Rasch", "1PL", "2PL", "3PL")
_BOUND_TOLERANCE = 1e-6


class Calibrator:
    """Marginal maximum likelihood item calibration by the Bock-Aitkin EM algorithm.

    Bock & Aitkin (1981) EM on a fixed quadrature grid with MAP priors (Mislevy 1986);
    missing responses drop out of the likelihood. With ``fixed_pool`` the items of that pool
    keep their parameters and only the other items are estimated, while the latent
    distribution is re-estimated every cycle (Kim 2006, multiple weights updating and
    multiple EM cycles), which puts new or pretest items on the bank's scale. Without a fixed
    pool the latent distribution is N(0, 1), which sets the scale.

    Parameters
    ----------
    model : {'Rasch', '1PL', '2PL', '3PL'}
        Rasch: ``a = 1`` (logistic metric, D = 1) and per-item difficulty (Rasch 1960); 1PL: one
        common, estimated discrimination and per-item difficulty; 2PL: ``c = 0``.
    prior_c : (alpha, beta) or None
        Beta prior on the 3PL lower asymptote.
    prior_loga : (mean, sd), 'hierarchical', Hierarchical or None
        Normal prior on ``log a``. ``'hierarchical'`` (Mislevy 1986) re-estimates the prior
        mean from the item estimates every EM cycle (hyperprior N(0, 1), sd 0.5 fixed);
        ``'hierarchical:mean,sd'`` or :class:`~qbank.calibration._em.Hierarchical` sets them.
        With ``fixed_pool`` the mean is the new items' own.
    prior_b : (mean, sd), 'hierarchical:mean,sd', Hierarchical or None
        Normal prior on ``b`` (off by default); a bare ``'hierarchical'`` has sd 0.5, tight for
        difficulties, so give the sd (e.g. ``'hierarchical:0,1'``).
    fixed_pool : ItemPool, path or None
        Bank items whose parameters stay fixed (any ``D``; converted to ``D = 1``).
    n_quad : int
        Equally spaced quadrature points on ``theta_range``.
    theta_range : (float, float)
    latent : {'normal', 'histogram'}
        How the latent distribution is re-estimated in fixed-parameter calibration: a normal
        with the posterior's mean and sd (default; converges in a few cycles), or the empirical
        histogram of Kim's MWU (no shape assumed; often ten times more cycles).
    max_iter : int
        Maximum number of EM cycles.
    tol : float
        Convergence when no estimated ``a``, ``b`` or ``c`` changes by more than this in one cycle.
    drop_invariant : bool
        Drop items whose responses are all equal (with a warning) instead of raising.
    se_b_limit : float or None
        Items whose difficulty has a standard error above this (logits; default 0.5, so a 95 %
        interval of about +-1) are flagged ``poorly_determined`` in the report and named in a
        warning; None flags only items at a bound. These are items far from most of the
        examinees who took them (on adaptive data, items given only to examinees far below or
        above them), whose estimates can be off by more than a logit. In the benchmark's
        recovery runs every item more than 1 logit off was flagged, along with 0.3-2 % of the
        items of complete data and 2-3 % of the CAT items with 100 responses or more
        (``benchmarks/README.md``).
    blas_threads : int or None
        BLAS threads during the fit. The EM runs many small products (persons x items x grid
        points), which one thread does as fast as several on an idle machine and 5-15 times
        faster on a busy one, where threads wait for cores; None keeps the BLAS default.
    progress : bool
        Show a tqdm bar over EM cycles.

    Attributes
    ----------
    item_params_ : DataFrame indexed by item_id
        ``a, b, c, D`` of every item in the output pool.
    report_ : CalibrationReport
    n_iter_ : int
    converged_ : bool
    log_likelihood_ : float
        Marginal log-likelihood at the estimates.

    Examples
    --------
    >>> from qbank.calibration import Calibrator
    >>> fitted = Calibrator("2PL").fit("responses.csv")      # doctest: +SKIP
    >>> fitted.to_pool()                                     # doctest: +SKIP
    """

    def __init__(
        self,
        model="3PL",
        *,
        prior_c=(5.0, 17.0),
        prior_loga=(0.0, 0.5),
        prior_b=None,
        fixed_pool=None,
        n_quad=41,
        theta_range=(-5.0, 5.0),
        max_iter=500,
        tol=1e-4,
        latent="normal",
        drop_invariant=False,
        se_b_limit=0.5,
        blas_threads=1,
        progress=False,
    ):
        self.model = model
        self.prior_c = prior_c
        self.prior_loga = prior_loga
        self.prior_b = prior_b
        self.fixed_pool = fixed_pool
        self.n_quad = n_quad
        self.theta_range = theta_range
        self.max_iter = max_iter
        self.tol = tol
        self.latent = latent
        self.drop_invariant = drop_invariant
        self.se_b_limit = se_b_limit
        self.blas_threads = blas_threads
        self.progress = progress

    # ------------------------------------------------------------------ checks
    def _check_settings(self):
        model = {m.upper(): m for m in MODELS}.get(str(self.model).upper())
        if model is None:
            raise CalibrationError(f"model must be one of {list(MODELS)}, got {self.model!r}")
        loga = check_prior(self.prior_loga, "normal", "prior_loga")
        b = check_prior(self.prior_b, "normal", "prior_b")
        loga_hyper = loga if isinstance(loga, Hierarchical) else None
        b_hyper = b if isinstance(b, Hierarchical) else None
        priors = _em.Priors(
            loga=(loga.mean, loga.sd) if loga_hyper else loga,
            b=(b.mean, b.sd) if b_hyper else b,
            c=check_prior(self.prior_c, "beta", "prior_c") if model == "3PL" else None,
            loga_hyper=loga_hyper,
            b_hyper=b_hyper,
        )
        if not (isinstance(self.n_quad, (int, np.integer)) and self.n_quad >= 5):
            raise CalibrationError(f"n_quad must be an integer >= 5, got {self.n_quad!r}")
        low, high = (float(v) for v in self.theta_range)
        if not low < high:
            raise CalibrationError(
                f"theta_range must be (low, high) with low < high, got {self.theta_range!r}"
            )
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise CalibrationError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if self.latent not in ("normal", "histogram"):
            raise CalibrationError(f"latent must be 'normal' or 'histogram', got {self.latent!r}")
        if self.blas_threads is not None and not (
            isinstance(self.blas_threads, (int, np.integer)) and self.blas_threads >= 1
        ):
            raise CalibrationError(f"blas_threads must be an integer >= 1 or None, got {self.blas_threads!r}")
        if not self.tol > 0:
            raise CalibrationError(f"tol must be > 0, got {self.tol!r}")
        if self.se_b_limit is not None and not (
            isinstance(self.se_b_limit, (int, float, np.number))
            and math.isfinite(self.se_b_limit)
            and self.se_b_limit > 0
        ):
            raise CalibrationError(f"se_b_limit must be a finite number > 0 or None, got {self.se_b_limit!r}")
        return model, priors, np.linspace(low, high, int(self.n_quad))

    # ------------------------------------------------------------------ fitting
    def fit(self, responses, format="auto"):
        """Estimate item parameters from responses.

        Parameters
        ----------
        responses : path, DataFrame, array_like of shape (n_persons, n_items) or ResponseMatrix
            Wide or long responses; see :func:`qbank.calibration.read_responses`.
        format : {'auto', 'wide', 'long'}

        Returns
        -------
        self

        Raises
        ------
        CalibrationError
            Invalid settings or responses, items without variance (unless ``drop_invariant``),
            a fixed pool that shares no item with the responses.
        """
        started = time.perf_counter()
        model, priors, theta = self._check_settings()
        data = read_responses(responses, format)
        if self.blas_threads is None:
            return self._fit(data, model, priors, theta, started)
        with threadpool_limits(limits=int(self.blas_threads), user_api="blas"):
            return self._fit(data, model, priors, theta, started)

    def _fit(self, data, model, priors, theta, started):
        pool, fixed_mask = fixed_items(self.fixed_pool, data, model)
        data, free_mask, dropped = drop_invariant(data, ~fixed_mask, self.drop_invariant)
        fixed_mask = ~free_mask
        n_answered_person, _ = data.person_counts()
        n_empty_persons = int((n_answered_person == 0).sum())
        if n_empty_persons:
            data = data.select(persons=n_answered_person > 0)
        if data.n_persons < 2:
            raise CalibrationError(f"need responses from at least 2 persons, got {data.n_persons}")
        free = data.select(items=~fixed_mask)

        cols, shared_a = {
            "Rasch": ([_em.B], False),  # log a stays at its start, 0
            "1PL": ([_em.LOGA, _em.B], True),
            "2PL": ([_em.LOGA, _em.B], False),
            "3PL": ([_em.LOGA, _em.B, _em.C], False),
        }[model]
        c_start = 0.0
        if model == "3PL":
            alpha, beta = priors.c or (1.0, 1.0)
            # Start at the prior mode when there is one.
            c_start = (
                float(np.clip((alpha - 1.0) / (alpha + beta - 2.0), 0.01, 0.5)) if alpha + beta > 2 else 0.2
            )
        fixed_loglik, theta_start, x_fixed = None, None, None
        if pool is not None:
            fixed = data.select(items=fixed_mask)
            positions = pool.index_of(list(fixed.item_id))
            x_fixed = np.column_stack(
                [np.log(pool.a[positions] * pool.D[positions]), pool.b[positions], pool.c[positions]]
            )
            fixed_loglik = _em.grid_log_likelihood(
                fixed.answered, fixed.correct, _em.item_probability(theta, x_fixed)
            )
            start_post, _ = _em.posterior(fixed_loglik, np.log(_em.normal_weights(theta)))
            theta_start = start_post @ theta
            if model == "1PL":
                shared_a, cols = False, [_em.B]  # the common a is the bank's
            if model == "Rasch" and not np.allclose(x_fixed[:, _em.LOGA], 0.0, atol=1e-6):
                raise CalibrationError(
                    "fixed_pool: a Rasch calibration needs a bank with D*a = 1; this bank has D*a = "
                    f"{np.exp(x_fixed[0, _em.LOGA]):.3g}"
                )
        x = _em.start_values(free.answered, free.correct, c_start, theta_start)
        if pool is not None and model == "1PL":
            x[:, _em.LOGA] = x_fixed[0, _em.LOGA]

        x, priors, log_weights, trace, converged, last_change = self._em(
            theta, free, fixed_loglik, x, priors, cols, shared_a, estimate_latent=pool is not None
        )
        loglik = _em.grid_log_likelihood(free.answered, free.correct, _em.item_probability(theta, x))
        if fixed_loglik is not None:
            loglik += fixed_loglik
        post, marginal = _em.posterior(loglik, log_weights)

        variances, se_method = self._variances(theta, post, free, x, priors, cols, shared_a)
        self._finish(
            model,
            priors,
            cols,
            shared_a,
            theta,
            data,
            free,
            fixed_mask,
            x,
            pool,
            variances,
            se_method,
            log_weights,
            trace,
            converged,
            last_change,
            marginal,
            dropped,
            n_empty_persons,
            started,
        )
        return self

    def _em(self, theta, free, fixed_loglik, x, priors, cols, shared_a, estimate_latent):
        log_weights = np.log(_em.normal_weights(theta))
        trace = []
        converged, change = False, np.inf
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.max_iter, desc="EM cycles", unit="cycle", leave=False)
        try:
            for _ in range(self.max_iter):
                loglik = _em.grid_log_likelihood(free.answered, free.correct, _em.item_probability(theta, x))
                if fixed_loglik is not None:
                    loglik += fixed_loglik
                post, marginal = _em.posterior(loglik, log_weights)
                trace.append(marginal)
                latent_change = 0.0
                if estimate_latent:
                    # Kim (2006) MWU: the latent distribution is re-estimated from every E-step's
                    # posterior, as a histogram or as a normal with the posterior's mean and sd.
                    before = _em.latent_moments(theta, log_weights)
                    log_weights = _em.latent_log_weights(theta, post, self.latent)
                    latent_change = float(
                        np.abs(np.subtract(_em.latent_moments(theta, log_weights), before)).max()
                    )
                r, n = _em.expected_counts(free.answered, free.correct, post)
                updated = _em.m_step(theta, r, n, x, priors, cols, shared_a)
                # Mislevy (1986): the hierarchical prior means are an M-step of their own.
                loga_rows = None if _em.LOGA not in cols else slice(0, 1) if shared_a else slice(None)
                priors, hyper_change = priors.with_hyper_update(updated, loga_rows)
                change = max(
                    float(np.abs(_em.natural(updated) - _em.natural(x)).max()), latent_change, hyper_change
                )
                x = updated
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loglik=f"{marginal:.2f}", change=f"{change:.1e}")
                if change < self.tol:
                    converged = True
                    break
        finally:
            if bar is not None:
                bar.close()
        if not converged:
            warnings.warn(
                f"EM stopped after max_iter={self.max_iter} cycles without converging: the largest parameter "
                f"change in the last cycle was {change:.3g} > tol={self.tol}",
                CalibrationWarning,
                stacklevel=4,
            )
        return x, priors, log_weights, np.array(trace), converged, change

    @staticmethod
    def _variances(theta, post, free, x, priors, cols, shared_a):
        scores = _em.score_vectors(theta, post, free.answered, free.correct, x, cols, shared_a)
        _, curvature = priors.gradient_curvature(x)
        if shared_a:
            prior_curv = np.concatenate(
                [
                    [_em.Priors(loga=priors.loga, b=None, c=None).gradient_curvature(x[:1])[1][0, _em.LOGA]],
                    curvature[:, _em.B],
                ]
            )
        else:
            prior_curv = np.concatenate([curvature[:, k] for k in cols])
        variances, method = _em.cross_product_covariance(scores, prior_curv, x.shape[0], len(cols))
        out = np.full((x.shape[0], 3), np.nan)
        if shared_a:
            out[:, _em.LOGA] = variances[0]
            out[:, _em.B] = variances[1:]
        else:
            for i, k in enumerate(cols):
                out[:, k] = variances[i * x.shape[0] : (i + 1) * x.shape[0]]
        return out, method

    def _finish(
        self,
        model,
        priors,
        cols,
        shared_a,
        theta,
        data,
        free,
        fixed_mask,
        x,
        pool,
        variances,
        se_method,
        log_weights,
        trace,
        converged,
        last_change,
        marginal,
        dropped,
        n_empty_persons,
        started,
    ):
        a, b, c = np.exp(x[:, _em.LOGA]), x[:, _em.B], x[:, _em.C]
        with np.errstate(invalid="ignore"):
            se = np.sqrt(np.maximum(variances, 0.0))
        n_answered, n_correct = free.item_counts()
        estimated = np.zeros((x.shape[0], 3), dtype=bool)
        estimated[:, cols] = True
        lower, upper = _em.BOUNDS[:, 0], _em.BOUNDS[:, 1]
        hit = estimated & ((x <= lower + _BOUND_TOLERANCE) | (x >= upper - _BOUND_TOLERANCE))
        hit[:, _em.C] &= x[:, _em.C] >= upper[_em.C] - _BOUND_TOLERANCE  # c = 0 is a legitimate estimate
        at_bound = hit.any(axis=1)
        with np.errstate(invalid="ignore"):
            # A NaN standard error (a singular information block) is no evidence of precision either.
            imprecise = (
                ~(se[:, _em.B] <= self.se_b_limit) if self.se_b_limit is not None else np.zeros_like(at_bound)
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
                "p_correct": n_correct / n_answered,
                "fixed": False,
                "at_bound": at_bound,
                "poorly_determined": poorly_determined,
            }
        )
        if at_bound.any():
            warnings.warn(
                f"{at_bound.sum()} item(s) ended at a bound of (log a, b, c) {_em.BOUNDS.round(3).tolist()}, so the "
                f"data do not determine them (see se_b): {shown(free.item_id[at_bound])}; typical on adaptive data "
                "for an item given only to low-ability examinees, whose answers a c prior can explain as guessing; "
                "try a weaker prior_c or the 2PL",
                CalibrationWarning,
                stacklevel=4,
            )
        imprecise &= ~at_bound
        if imprecise.any():
            named = [
                f"{item} (b {value:.2f}, se_b {error:.2f})"
                for item, value, error in zip(free.item_id[imprecise], b[imprecise], se[imprecise, _em.B])
            ]
            warnings.warn(
                f"{imprecise.sum()} item(s) have se_b > se_b_limit={self.se_b_limit}, so the data hardly place "
                f"their difficulty: {shown(named)}; typical of an item far from most of the examinees who took it (on "
                "adaptive data, one given only to examinees far below or above it), whose estimate can be off by "
                "more than a logit; collect responses near its difficulty (e.g. pretest it on a random sample) "
                "before relying on it",
                CalibrationWarning,
                stacklevel=4,
            )
        topic = None
        if pool is not None:
            n_fixed, n_fixed_correct = data.select(items=fixed_mask).item_counts()
            counts = dict(zip(data.item_id[fixed_mask], zip(n_fixed, n_fixed_correct)))
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
                        counts[i][1] / counts[i][0] if i in counts else np.nan for i in pool.item_id
                    ],
                    "fixed": True,
                    "at_bound": False,
                    "poorly_determined": False,
                }
            )
            items = pd.concat([bank, items], ignore_index=True)
            if pool.topic is not None:
                topic = np.concatenate([pool.topic.astype(object), np.full(free.n_items, "", dtype=object)])
        items = items.set_index("item_id")
        out_pool = ItemPool.from_arrays(
            items["a"].to_numpy(),
            items["b"].to_numpy(),
            items["c"].to_numpy(),
            D=1.0,
            item_id=items.index.to_numpy(),
            topic=topic,
            name="calibrated",
        )
        weights = np.exp(log_weights)
        weights /= weights.sum()
        latent_mean = float(weights @ theta)
        latent_sd = float(np.sqrt(max(weights @ theta**2 - latent_mean**2, 0.0)))
        summary = {
            "model": model,
            "method": "Bock-Aitkin MML-EM"
            + (" with fixed items (Kim 2006 MWU-MEM)" if pool is not None else ""),
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
            "n_persons_without_responses": n_empty_persons,
            "n_items_estimated": int(free.n_items),
            "n_items_fixed": 0 if pool is None else int(pool.n_items),
            "n_responses": int(data.n_responses),
            "dropped_items": dropped,
            "se_b_limit": self.se_b_limit,
            "n_items_poorly_determined": int(poorly_determined.sum()),
            "iterations": len(trace),
            "converged": bool(converged),
            "tol": float(self.tol),
            "last_max_change": float(last_change),
            "log_likelihood": float(marginal),
            "log_posterior": float(marginal + log_prior(priors, x, cols, shared_a)),
            "latent_estimated": None if pool is None else self.latent,
            "latent_mean": latent_mean,
            "latent_sd": latent_sd,
            "n_quad": int(theta.size),
            "theta_range": [float(theta[0]), float(theta[-1])],
            "se_method": se_method,
            "storage": "sparse" if data.is_sparse else "dense",
            "seconds": time.perf_counter() - started,
        }
        self.report_ = CalibrationReport(
            out_pool, items, summary, pd.DataFrame({"theta": theta, "weight": weights}), trace
        )
        self.item_params_ = items[["a", "b", "c", "D"]].copy()
        self.n_iter_ = summary["iterations"]
        self.converged_ = summary["converged"]
        self.log_likelihood_ = summary["log_likelihood"]

    def to_pool(self, name: str = "calibrated") -> ItemPool:
        """The calibrated pool (``D = 1``), readable by ``qbank simulate`` and ``qbank sh`` once saved."""
        if not hasattr(self, "report_"):
            raise CalibrationError("this Calibrator is not fitted yet; call fit(responses) first")
        pool = self.report_.pool
        return ItemPool(
            pool.item_id.copy(),
            pool.a.copy(),
            pool.b.copy(),
            pool.c.copy(),
            pool.D.copy(),
            None if pool.topic is None else pool.topic.copy(),
            name,
        )


def calibrate(responses, model="3PL", *, fixed_pool=None, format="auto", **options) -> CalibrationReport:
    """Calibrate items by Bock-Aitkin MML-EM; ``Calibrator(model, ...).fit(responses).report_``.

    Parameters
    ----------
    responses : path, DataFrame, array_like of shape (n_persons, n_items) or ResponseMatrix
    model : {'Rasch', '1PL', '2PL', '3PL'}
    fixed_pool : ItemPool, path or None
        Fixed-parameter calibration against these bank items (Kim 2006).
    format : {'auto', 'wide', 'long'}
    **options
        Any other :class:`Calibrator` parameter (``prior_c``, ``prior_loga``, ``max_iter``, ...).

    Returns
    -------
    CalibrationReport
    """
    return Calibrator(model, fixed_pool=fixed_pool, **options).fit(responses, format=format).report_
