"""The item blocks of one EM run and the EM loop over them.

A run estimates up to two blocks at once: dichotomous items (Rasch/1PL/2PL/3PL, the kernels of
:mod:`qbank.calibration._em`) and polytomous items (GRM or GPCM, :mod:`qbank.calibration._em_poly`).
The E-step adds their grid log-likelihoods (and the fixed items', in fixed-parameter calibration)
into one posterior per person; each block then takes its own M-step on its expected counts
(Bock & Aitkin 1981). Validation is assumed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from qbank import polytomous
from qbank.calibration import _em
from qbank.calibration._data import CalibrationWarning, ResponseMatrix
from qbank.calibration._em_poly import PolytomousItems
from qbank.calibration._priors import log_prior


@dataclass
class DichotomousBlock:
    """Dichotomous items: ``x`` of shape (n_items, 3) holding ``(log a, b, c)``."""

    data: ResponseMatrix
    cols: list
    shared_a: bool
    x: np.ndarray

    def grid_log_likelihood(self, theta):
        return _em.grid_log_likelihood(
            self.data.answered, self.data.score, _em.item_probability(theta, self.x)
        )

    def m_step(self, theta, post, priors):
        r, n = _em.expected_counts(self.data.answered, self.data.score, post)
        return _em.m_step(theta, r, n, self.x, priors, self.cols, self.shared_a)

    def natural(self, x):
        return _em.natural(x)

    def as_rows(self, x):
        """``(log a, b, c)`` rows for the hierarchical prior update, and the rows whose log a is estimated."""
        if _em.LOGA not in self.cols:
            return x, np.zeros(0, dtype=np.intp)
        return x, np.arange(1 if self.shared_a else len(x))

    def log_prior(self, priors):
        return log_prior(priors, self.x, self.cols, self.shared_a)

    def variances(self, theta, post, priors):
        """Cross-product variances of ``(log a, b, c)``, shape (n_items, 3) (NaN where not estimated), and the method."""
        x, cols, shared_a = self.x, self.cols, self.shared_a
        scores = _em.score_vectors(theta, post, self.data.answered, self.data.score, x, cols, shared_a)
        _, curvature = priors.gradient_curvature(x)
        if shared_a:
            shared = _em.Priors(loga=priors.loga, b=None, c=None).gradient_curvature(x[:1])[1][0, _em.LOGA]
            prior_curv = np.concatenate([[shared], curvature[:, _em.B]])
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


@dataclass
class PolytomousBlock:
    """GRM or GPCM items: ``x`` of shape (n_items, M), see :mod:`qbank.calibration._em_poly`."""

    data: ResponseMatrix
    items: PolytomousItems
    x: np.ndarray
    indicators: object = field(init=False, repr=False)

    def __post_init__(self):
        rows, cols, y = self.data.cells()
        self.indicators = self.items.indicators(rows, cols, y, self.data.n_persons)

    def grid_log_likelihood(self, theta):
        return self.items.grid_log_likelihood(self.indicators, theta, self.x)

    def m_step(self, theta, post, priors):
        return self.items.m_step(theta, self.items.expected_counts(self.indicators, post), self.x, priors)

    def natural(self, x):
        return self.items.natural(x)

    def as_rows(self, x):
        location = np.nanmean(self.items.thresholds(x), axis=1)
        return np.column_stack([x[:, 0], location, np.zeros(len(x))]), np.arange(len(x))

    def log_prior(self, priors):
        return float(self.items._prior_terms(self.x, priors)[0].sum())


def fixed_log_likelihood(theta, fixed: ResponseMatrix, pool, positions) -> np.ndarray:
    """Grid log-likelihood (n_persons, n_quad) of responses to fixed items of a pool with
    polytomous items, through the category kernel of :mod:`qbank.polytomous`."""
    thresholds = pool.threshold_table[positions]
    width = max(thresholds.shape[1] + 1, 2)
    log_p = polytomous.category_log_probabilities(
        theta[:, None, None],
        pool.a[positions],
        pool.b[positions],
        pool.c[positions],
        pool.D[positions],
        pool.model_codes[positions],
        thresholds,
    )
    log_p = np.maximum(log_p, np.log(_em._P_EPS)).reshape(len(theta), -1)
    rows, cols, y = fixed.cells()
    from scipy import sparse

    indicators = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols * width + y)), shape=(fixed.n_persons, fixed.n_items * width)
    )
    return np.asarray(indicators @ log_p.T)


@dataclass
class EMResult:
    priors: _em.Priors
    log_weights: np.ndarray
    trace: np.ndarray
    converged: bool
    last_change: float


def run_em(
    theta, blocks, fixed_loglik, priors, *, estimate_latent, latent, max_iter, tol, bar=None
) -> EMResult:
    """Bock-Aitkin EM cycles over the blocks until no estimate (nor the latent distribution, nor a
    hierarchical prior mean) changes by more than ``tol``; updates each block's ``x`` in place."""
    log_weights = np.log(_em.normal_weights(theta))
    trace = []
    converged, change = False, np.inf
    for _ in range(max_iter):
        loglik = sum(block.grid_log_likelihood(theta) for block in blocks)
        if fixed_loglik is not None:
            loglik = loglik + fixed_loglik
        post, marginal = _em.posterior(loglik, log_weights)
        trace.append(marginal)
        latent_change = 0.0
        if estimate_latent:
            # Kim (2006) MWU: the latent distribution is re-estimated from every E-step's
            # posterior, as a histogram or as a normal with the posterior's mean and sd.
            before = _em.latent_moments(theta, log_weights)
            log_weights = _em.latent_log_weights(theta, post, latent)
            latent_change = float(np.abs(np.subtract(_em.latent_moments(theta, log_weights), before)).max())
        updated = [block.m_step(theta, post, priors) for block in blocks]
        # Mislevy (1986): the hierarchical prior means are an M-step of their own.
        rows, loga_rows, offset = [], [], 0
        for block, x in zip(blocks, updated):
            stacked, estimated = block.as_rows(x)
            rows.append(stacked)
            loga_rows.append(estimated + offset)
            offset += len(x)
        loga_rows = np.concatenate(loga_rows)
        priors, hyper_change = priors.with_hyper_update(
            np.vstack(rows), loga_rows if loga_rows.size else None
        )
        change = max(
            [
                float(np.abs(block.natural(x) - block.natural(block.x)).max())
                for block, x in zip(blocks, updated)
            ]
            + [latent_change, hyper_change]
        )
        for block, x in zip(blocks, updated):
            block.x = x
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loglik=f"{marginal:.2f}", change=f"{change:.1e}")
        if change < tol:
            converged = True
            break
    if not converged:
        warnings.warn(
            f"EM stopped after max_iter={max_iter} cycles without converging: the largest parameter "
            f"change in the last cycle was {change:.3g} > tol={tol}",
            CalibrationWarning,
            stacklevel=4,
        )
    return EMResult(priors, log_weights, np.array(trace), converged, change)
