"""Public calibration API: the :class:`Calibrator` estimator, :func:`calibrate` and the report."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

from qbank.calibration import _em
from qbank.calibration._blocks import DichotomousBlock, PolytomousBlock, fixed_log_likelihood, run_em
from qbank.calibration._data import (
    CalibrationError,
    CalibrationWarning,
    check_fixed_scores,
    drop_invariant,
    fixed_items,
    polytomous_mask,
    read_responses,
)
from qbank.calibration._em import Hierarchical
from qbank.calibration._em_poly import PolytomousItems
from qbank.calibration._priors import check_prior, parse_prior
from qbank.calibration._report import CalibrationReport
from qbank.calibration._results import FitState, build_report
from qbank.pool import ItemPool

__all__ = ["MODELS", "CalibrationReport", "CalibrationWarning", "Calibrator", "calibrate", "parse_prior"]

MODELS = ("Rasch", "1PL", "2PL", "3PL", "GRM", "GPCM")
DICHOTOMOUS_MODELS = MODELS[:4]


def _c_start(priors) -> float:
    """Start value of c: the mode of its Beta prior when there is one (0 without a c)."""
    if priors.c is None:
        return 0.0
    alpha, beta = priors.c
    return float(np.clip((alpha - 1.0) / (alpha + beta - 2.0), 0.01, 0.5)) if alpha + beta > 2 else 0.2


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
    model : {'Rasch', '1PL', '2PL', '3PL', 'GRM', 'GPCM'}
        Rasch: ``a = 1`` (logistic metric, D = 1) and per-item difficulty (Rasch 1960); 1PL: one
        common, estimated discrimination and per-item difficulty; 2PL: ``c = 0``. GRM (Samejima
        1969) and GPCM (Muraki 1992): items scored ``0 .. m-1`` in ordered categories, each with
        ``a`` and ``m - 1`` thresholds (the GRM's kept increasing); every category must be observed.
    dichotomous_model : {'Rasch', '1PL', '2PL', '3PL'} or None
        With ``model`` GRM or GPCM: items whose observed scores are only 0 and 1 get this model,
        the others the polytomous one (a mixed run). None (default): every item gets the
        polytomous model (a 2-category GRM or GPCM item is a 2PL item). In a mixed run the standard
        errors come from each block's own cross-product information (dichotomous, polytomous).
    prior_c : (alpha, beta) or None
        Beta prior on the 3PL lower asymptote.
    prior_loga : (mean, sd), 'hierarchical', Hierarchical or None
        Normal prior on ``log a``. ``'hierarchical'`` (Mislevy 1986) re-estimates the prior
        mean from the item estimates every EM cycle (hyperprior N(0, 1), sd 0.5 fixed);
        ``'hierarchical:mean,sd'`` or :class:`~qbank.calibration._em.Hierarchical` sets them.
        With ``fixed_pool`` the mean is the new items' own.
    prior_b : (mean, sd), 'hierarchical:mean,sd', Hierarchical or None
        Normal prior on ``b`` (off by default), and on every threshold of a polytomous item; a bare
        ``'hierarchical'`` has sd 0.5, tight for difficulties, so give the sd (e.g. ``'hierarchical:0,1'``).
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
        dichotomous_model=None,
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
        self.dichotomous_model = dichotomous_model
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
        dichotomous_model = model if model in DICHOTOMOUS_MODELS else None
        if self.dichotomous_model is not None:
            dichotomous_model = {m.upper(): m for m in DICHOTOMOUS_MODELS}.get(
                str(self.dichotomous_model).upper()
            )
            if dichotomous_model is None:
                raise CalibrationError(
                    f"dichotomous_model must be one of {list(DICHOTOMOUS_MODELS)} or None, got {self.dichotomous_model!r}"
                )
            if model in DICHOTOMOUS_MODELS:
                raise CalibrationError(
                    f"dichotomous_model is for a GRM or GPCM run (mixed items); model is {model!r}"
                )
        loga = check_prior(self.prior_loga, "normal", "prior_loga")
        b = check_prior(self.prior_b, "normal", "prior_b")
        loga_hyper = loga if isinstance(loga, Hierarchical) else None
        b_hyper = b if isinstance(b, Hierarchical) else None
        priors = _em.Priors(
            loga=(loga.mean, loga.sd) if loga_hyper else loga,
            b=(b.mean, b.sd) if b_hyper else b,
            c=check_prior(self.prior_c, "beta", "prior_c") if dichotomous_model == "3PL" else None,
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
        return model, dichotomous_model, priors, np.linspace(low, high, int(self.n_quad))

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
            scores above 1 with a dichotomous model, a GRM/GPCM item with an unobserved category,
            a fixed pool that shares no item with the responses or whose items get scores above
            their top category.
        """
        started = time.perf_counter()
        model, dichotomous_model, priors, theta = self._check_settings()
        data = read_responses(responses, format)
        if self.blas_threads is None:
            return self._fit(data, model, dichotomous_model, priors, theta, started)
        with threadpool_limits(limits=int(self.blas_threads), user_api="blas"):
            return self._fit(data, model, dichotomous_model, priors, theta, started)

    def _fit(self, data, model, dichotomous_model, priors, theta, started):
        pool, fixed_mask = fixed_items(self.fixed_pool, data, dichotomous_model)
        if model in DICHOTOMOUS_MODELS:  # scores above 1 are named before any other item problem
            polytomous_mask(data.select(items=~fixed_mask), model, None)
        data, free_mask, dropped = drop_invariant(data, ~fixed_mask, self.drop_invariant)
        fixed_mask = ~free_mask
        n_answered_person, _ = data.person_counts()
        n_empty_persons = int((n_answered_person == 0).sum())
        if n_empty_persons:
            data = data.select(persons=n_answered_person > 0)
        if data.n_persons < 2:
            raise CalibrationError(f"need responses from at least 2 persons, got {data.n_persons}")
        free = data.select(items=~fixed_mask)
        poly_mask = polytomous_mask(free, model, dichotomous_model)

        cols, shared_a = {
            "Rasch": ([_em.B], False),  # log a stays at its start, 0
            "1PL": ([_em.LOGA, _em.B], True),
            "2PL": ([_em.LOGA, _em.B], False),
            "3PL": ([_em.LOGA, _em.B, _em.C], False),
            None: ([], False),
        }[dichotomous_model]
        fixed_loglik, theta_start, x_fixed = None, None, None
        if pool is not None:
            fixed = data.select(items=fixed_mask)
            positions = pool.index_of(list(fixed.item_id))
            check_fixed_scores(fixed, pool, positions)
            x_fixed = np.column_stack(
                [np.log(pool.a[positions] * pool.D[positions]), pool.b[positions], pool.c[positions]]
            )
            if pool.is_polytomous:
                fixed_loglik = fixed_log_likelihood(theta, fixed, pool, positions)
            else:
                fixed_loglik = _em.grid_log_likelihood(
                    fixed.answered, fixed.score, _em.item_probability(theta, x_fixed)
                )
            start_post, _ = _em.posterior(fixed_loglik, np.log(_em.normal_weights(theta)))
            theta_start = start_post @ theta
            if dichotomous_model == "1PL":
                shared_a, cols = False, [_em.B]  # the common a is the bank's
            if dichotomous_model == "Rasch" and not np.allclose(x_fixed[:, _em.LOGA], 0.0, atol=1e-6):
                raise CalibrationError(
                    "fixed_pool: a Rasch calibration needs a bank with D*a = 1; this bank has D*a = "
                    f"{np.exp(x_fixed[0, _em.LOGA]):.3g}"
                )
        blocks = []
        if (~poly_mask).any():
            dichotomous = free.select(items=~poly_mask)
            x = _em.start_values(dichotomous.answered, dichotomous.score, _c_start(priors), theta_start)
            if pool is not None and dichotomous_model == "1PL":
                x[:, _em.LOGA] = x_fixed[0, _em.LOGA]
            blocks.append(DichotomousBlock(dichotomous, cols, shared_a, x))
        if poly_mask.any():
            graded = free.select(items=poly_mask)
            counts = graded.category_counts()
            n_categories = np.sum(np.cumsum(counts[:, ::-1], axis=1)[:, ::-1] > 0, axis=1)
            items = PolytomousItems(model == "GRM", n_categories)
            x = items.start_values(counts, theta_start, graded.answered)
            blocks.append(PolytomousBlock(graded, items, x))

        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.max_iter, desc="EM cycles", unit="cycle", leave=False)
        try:
            result = run_em(
                theta,
                blocks,
                fixed_loglik,
                priors,
                estimate_latent=pool is not None,
                latent=self.latent,
                max_iter=self.max_iter,
                tol=self.tol,
                bar=bar,
            )
        finally:
            if bar is not None:
                bar.close()
        loglik = sum(block.grid_log_likelihood(theta) for block in blocks)
        if fixed_loglik is not None:
            loglik = loglik + fixed_loglik
        post, marginal = _em.posterior(loglik, result.log_weights)
        state = self._state(theta, post, free, poly_mask, blocks, result, dichotomous_model)
        state.update(
            model=model,
            dichotomous_model=dichotomous_model,
            theta=theta,
            data=data,
            free=free,
            fixed_mask=fixed_mask,
            pool=pool,
            log_weights=result.log_weights,
            trace=result.trace,
            converged=result.converged,
            last_change=result.last_change,
            marginal=marginal,
            log_prior=sum(block.log_prior(result.priors) for block in blocks),
            priors=result.priors,
            dropped=dropped,
            n_empty_persons=n_empty_persons,
            started=started,
            latent=self.latent,
            tol=self.tol,
            se_b_limit=self.se_b_limit,
        )
        self.report_ = build_report(FitState(**state))
        self.item_params_ = self.report_.items[["a", "b", "c", "D"]].copy()
        self.n_iter_ = self.report_.summary["iterations"]
        self.converged_ = self.report_.summary["converged"]
        self.log_likelihood_ = self.report_.summary["log_likelihood"]
        return self

    @staticmethod
    def _state(theta, post, free, poly_mask, blocks, result, dichotomous_model) -> dict:
        """Per-item estimates and standard errors in the order of ``free``."""
        n_free = free.n_items
        width = max([block.items.width for block in blocks if isinstance(block, PolytomousBlock)], default=1)
        x = np.zeros((n_free, 3))
        se = np.full((n_free, 3), np.nan)
        thresholds = np.full((n_free, width - 1), np.nan)
        se_thresholds = np.full((n_free, width - 1), np.nan)
        estimated = np.zeros((n_free, 3), dtype=bool)
        item_model = np.zeros(n_free, dtype=np.int8)
        methods = []
        for block in blocks:
            if isinstance(block, DichotomousBlock):
                rows = ~poly_mask
                x[rows] = block.x
                estimated[np.ix_(rows, block.cols)] = True
                variances, method = block.variances(theta, post, result.priors)
                with np.errstate(invalid="ignore"):
                    se[rows] = np.sqrt(np.maximum(variances, 0.0))
                methods.append(method)
            else:
                rows, items = poly_mask, block.items
                steps = items.thresholds(block.x)
                cov, method = items.covariance(theta, post, block.indicators, block.x, result.priors)
                n_steps = steps.shape[1]
                x[rows, _em.LOGA] = block.x[:, 0]
                x[rows, _em.B] = np.nanmean(steps, axis=1)
                thresholds[rows, :n_steps] = steps
                item_model[rows] = items.code
                estimated[rows, : _em.C] = True
                with np.errstate(invalid="ignore"):
                    se_thresholds[rows, :n_steps] = np.sqrt(
                        np.maximum(np.diagonal(cov, axis1=1, axis2=2)[:, 1:], 0.0)
                    )
                    se[rows, _em.LOGA] = np.sqrt(np.maximum(cov[:, 0, 0], 0.0))
                    # The location is the mean of the thresholds: w' cov w with w = 1 / (m - 1).
                    weights = np.where(items.valid, 1.0 / (items.n_categories - 1)[:, None], 0.0)
                    location_var = np.einsum("jv,jvw,jw->j", weights, np.nan_to_num(cov[:, 1:, 1:]), weights)
                    se[rows, _em.B] = np.sqrt(np.maximum(location_var, 0.0))
                methods.append(f"polytomous: {method}")
        return {
            "x": x,
            "item_model": item_model,
            "thresholds": thresholds,
            "se": se,
            "se_thresholds": se_thresholds,
            "estimated": estimated,
            "se_method": "; ".join(methods),
        }

    def to_pool(self, name: str = "calibrated") -> ItemPool:
        """The calibrated pool (``D = 1``), readable by ``qbank simulate`` and ``qbank sh`` once saved."""
        if not hasattr(self, "report_"):
            raise CalibrationError("this Calibrator is not fitted yet; call fit(responses) first")
        pool = self.report_.pool
        copies = {
            f.name: getattr(pool, f.name).copy()
            for f in dataclasses.fields(pool)
            if isinstance(getattr(pool, f.name), np.ndarray)
        }
        return dataclasses.replace(pool, name=name, **copies)


def calibrate(responses, model="3PL", *, fixed_pool=None, format="auto", **options) -> CalibrationReport:
    """Calibrate items by Bock-Aitkin MML-EM; ``Calibrator(model, ...).fit(responses).report_``.

    Parameters
    ----------
    responses : path, DataFrame, array_like of shape (n_persons, n_items) or ResponseMatrix
    model : {'Rasch', '1PL', '2PL', '3PL', 'GRM', 'GPCM'}
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
