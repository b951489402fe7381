"""Private kernels of the Bock-Aitkin EM for items scored in ordered categories (GRM and GPCM).

Validation is assumed (see :mod:`qbank.calibration._calibrator`). Category probabilities come
from :mod:`qbank.polytomous`, the one kernel; this module adds their derivatives in the
parameters. An item with ``m`` categories carries ``x`` of shape ``(M,)`` (``M`` the most
categories of any item in the run): ``x[0] = log a`` and ``x[1:m]`` its threshold parameters,
zero-padded past ``m - 1`` (``valid`` marks the real ones). For the GPCM (Muraki 1992) those
are the step difficulties ``b_v``; for the GRM (Samejima 1969) they are ``b_1`` and
``log(b_v - b_{v-1})``, so the thresholds stay ordered whatever step the M-step takes.

Responses enter as category indicators: a matrix of shape ``(n_persons, n_items * M)`` with a
1 in column ``j * M + k`` when the person scored ``k`` on item ``j``; missing responses have no
entry and so drop out of the likelihood. Expected counts ``r`` have shape ``(n_quad, n_items, M)``.

References
----------
Muraki, E. (1992). A generalized partial credit model: application of an EM algorithm.
*Applied Psychological Measurement*, 16, 159-176 (the EM and its Fisher scoring M-step).
Samejima, F. (1969). Estimation of latent ability using a response pattern of graded scores.
*Psychometrika Monograph Supplement*, 17.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.special import logit

from qbank import polytomous
from qbank.calibration._em import BOUNDS, LOGA, Priors

_P_EPS = 1e-10
_B_BOUND = BOUNDS[1]  # thresholds stay where the likelihood is informative, like b
LOG_GAP = (np.log(1e-3), np.log(16.0))  # GRM: consecutive thresholds at least 0.001 apart
_SE_CHUNK_CELLS = 4_000_000  # person x (item, category) cells per chunk when forming score vectors


class PolytomousItems:
    """The model of one run's polytomous items: GRM or GPCM, number of categories per item.

    Parameters
    ----------
    grm : bool
        True for the GRM, False for the GPCM.
    n_categories : ndarray of shape (n_items,), int
    """

    def __init__(self, grm: bool, n_categories: np.ndarray):
        self.grm = grm
        self.n_categories = np.asarray(n_categories, dtype=np.intp)
        self.width = int(self.n_categories.max())
        self.valid = np.arange(1, self.width)[None, :] < self.n_categories[:, None]  # (J, M - 1)
        self.code = polytomous.GRM if grm else polytomous.GPCM

    # ------------------------------------------------------------------ parameters
    def thresholds(self, x: np.ndarray) -> np.ndarray:
        """Thresholds ``b_1 .. b_{M-1}`` of shape (n_items, M - 1), NaN past an item's last."""
        steps = x[:, 1:]
        if self.grm:
            gaps = np.where(self.valid[:, 1:], np.exp(steps[:, 1:]), 0.0)
            steps = steps[:, :1] + np.concatenate([np.zeros((len(x), 1)), np.cumsum(gaps, axis=1)], axis=1)
        return np.where(self.valid, steps, np.nan)

    def parameters(self, a: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """``x`` of shape (n_items, M) from ``a`` (n_items,) and NaN-padded thresholds."""
        b = np.where(self.valid, thresholds[:, : self.width - 1], 0.0)
        if self.grm:
            gaps = np.maximum(np.diff(b, axis=1), np.exp(LOG_GAP[0]))
            b = np.concatenate([b[:, :1], np.where(self.valid[:, 1:], np.log(gaps), 0.0)], axis=1)
        return np.column_stack([np.log(a), b])

    def natural(self, x: np.ndarray) -> np.ndarray:
        """``(a, b_1, ..., b_{M-1})`` with zeros past an item's last threshold, for convergence checks."""
        return np.column_stack([np.exp(x[:, 0]), np.nan_to_num(self.thresholds(x))])

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """``d b_v / d x_u`` over the threshold parameters, shape (n_items, M - 1, M - 1).

        Identity for the GPCM; for the GRM ``b_v = b_1 + sum_{2 <= u <= v} exp(x_u)``.
        """
        n_steps = self.width - 1
        if not self.grm:
            return np.broadcast_to(np.eye(n_steps), (len(x), n_steps, n_steps)) * self.valid[:, :, None]
        lower = np.tril(np.ones((n_steps, n_steps)))
        scale = np.concatenate([np.ones((len(x), 1)), np.exp(x[:, 2:])], axis=1)
        return lower[None] * scale[:, None, :] * self.valid[:, :, None] * self.valid[:, None, :]

    def clip(self, x: np.ndarray) -> np.ndarray:
        out = x.copy()
        out[:, 0] = np.clip(x[:, 0], *BOUNDS[LOGA])
        if self.grm:
            out[:, 1] = np.clip(x[:, 1], *_B_BOUND)
            out[:, 2:] = np.clip(x[:, 2:], *LOG_GAP)
        else:
            out[:, 1:] = np.clip(x[:, 1:], *_B_BOUND)
        return np.where(np.column_stack([np.ones(len(x), dtype=bool), self.valid]), out, 0.0)

    def start_values(self, counts: np.ndarray, theta_start=None, answered=None) -> np.ndarray:
        """``a = 1`` and thresholds ``-1.16 logit P(X >= v)`` (PROX, as for dichotomous items),
        shifted by the mean location of the item's takers when ``theta_start`` is given.

        Parameters
        ----------
        counts : ndarray of shape (n_items, >= M)
            Responses per category.
        """
        counts = counts[:, : self.width].astype(float)
        tail = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1] / counts.sum(axis=1, keepdims=True)
        b = -np.sqrt(1.0 + 1.0 / 2.9) * logit(np.clip(tail[:, 1:], 0.02, 0.98))
        b = np.maximum.accumulate(b + 0.05 * np.arange(b.shape[1]), axis=1)
        if theta_start is not None:
            n_item = np.asarray(answered.sum(axis=0)).ravel()
            b += (np.asarray(answered.T @ theta_start).ravel() / np.maximum(n_item, 1))[:, None]
        return self.clip(self.parameters(np.ones(len(b)), np.where(self.valid, b, np.nan)))

    # ------------------------------------------------------------------ likelihood
    def probabilities(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Category probabilities on the grid, shape (n_quad, n_items, M), clipped away from 0."""
        p = polytomous.category_probabilities(
            theta[:, None], np.exp(x[:, 0]), 0.0, 0.0, 1.0, self.code, self.thresholds(x)
        )
        return np.maximum(p, _P_EPS)

    def indicators(self, rows, cols, y, n_persons: int) -> sparse.csr_matrix:
        """Category indicators (n_persons, n_items * M) from answered cells (see module docstring)."""
        n_cells = len(rows)
        return sparse.csr_matrix(
            (np.ones(n_cells), (rows, cols * self.width + y)),
            shape=(n_persons, len(self.n_categories) * self.width),
        )

    def grid_log_likelihood(self, indicators, theta, x) -> np.ndarray:
        """``log P(y_n | theta_q)`` over these items, shape (n_persons, n_quad)."""
        log_p = np.log(self.probabilities(theta, x)).reshape(len(theta), -1)
        return np.asarray(indicators @ log_p.T)

    def expected_counts(self, indicators, post) -> np.ndarray:
        """Expected responses per grid point, item and category, shape (n_quad, n_items, M)."""
        return np.asarray(indicators.T @ post).T.reshape(post.shape[1], -1, self.width)

    def _derivatives(self, theta, x):
        """P (n_quad, J, M) and ``d log P_k / d x`` of shape (n_quad, J, M, M)."""
        a = np.exp(x[:, 0])
        b = np.nan_to_num(self.thresholds(x))  # (J, S)
        p = self.probabilities(theta, x)
        tail = np.cumsum(p[..., ::-1], axis=-1)[..., ::-1]  # P(X >= k)
        above = tail[..., 1:]  # (Q, J, S): P(X >= v), the GRM's P*_v
        centred = (theta[:, None, None] - b[None]) * self.valid  # (Q, J, S)
        k = np.arange(self.width)[:, None]
        v = np.arange(1, self.width)[None, :]
        if self.grm:
            # dP_k/db_v = -a w_v (1[k = v] - 1[k = v - 1]), w_v = P*_v (1 - P*_v)
            sign = (k == v).astype(float) - (k == v - 1)  # (M, S)
            w = above * (1.0 - above) * self.valid
            dp_db = -a[None, :, None, None] * sign[None, None] * w[:, :, None, :]
            dlog_db = dp_db / p[..., None]
            dlog_dloga = np.einsum("qjkv,qjv->qjk", dlog_db, -centred)
        else:
            # log P_k = sum_{v <= k} a (theta - b_v) - log sum_h exp(...): d/db_v = -a (1[v <= k] - P(X >= v))
            excess = ((v <= k).astype(float)[None, None] - above[:, :, None, :]) * self.valid[
                None, :, None, :
            ]
            dlog_db = -a[None, :, None, None] * excess
            dlog_dloga = np.einsum("qjkv,qjv->qjk", excess, a[None, :, None] * centred)
        dlog_dx = np.einsum("qjkv,jvu->qjku", dlog_db, self.jacobian(x))
        return p, np.concatenate([dlog_dloga[..., None], dlog_dx], axis=-1)

    # ------------------------------------------------------------------ M-step
    def _prior_terms(self, x, priors: Priors):
        """Log prior (J,), its gradient (J, M) and minus its Hessian (J, M, M) in ``x``.

        ``loga`` on ``log a``; ``b`` on every threshold ``b_v`` (Mislevy 1986's normal prior
        applied to each category boundary), carried to the GRM's parameters by the Jacobian.
        """
        n, m = x.shape
        value, grad, curv = np.zeros(n), np.zeros((n, m)), np.zeros((n, m, m))
        if priors.loga is not None:
            mean, sd = priors.loga
            value -= 0.5 * ((x[:, 0] - mean) / sd) ** 2
            grad[:, 0] = -(x[:, 0] - mean) / sd**2
            curv[:, 0, 0] = 1.0 / sd**2
        if priors.b is not None:
            mean, sd = priors.b
            b = np.nan_to_num(self.thresholds(x), nan=mean)
            jac = self.jacobian(x)
            value -= 0.5 * (((b - mean) / sd) ** 2).sum(axis=1)
            grad[:, 1:] = np.einsum("jv,jvu->ju", -(b - mean) / sd**2, jac)
            curv[:, 1:, 1:] = np.einsum("jvu,jvw->juw", jac, jac) / sd**2
        return value, grad, curv

    def objective(self, theta, r, x, priors: Priors) -> np.ndarray:
        """Expected complete-data log posterior per item, shape (n_items,)."""
        return (r * np.log(self.probabilities(theta, x))).sum(axis=(0, 2)) + self._prior_terms(x, priors)[0]

    def m_step(self, theta, r, x, priors: Priors) -> np.ndarray:
        """One Fisher-scoring step per item, halved until the objective does not decrease.

        The expected information is ``sum_q n_q sum_k P_k g_k g_k^T`` with ``g_k = d log P_k / d x``
        (Muraki 1992, sec. 3), all items at once; padded parameters get an identity block.
        """
        before = self.objective(theta, r, x, priors)
        p, g = self._derivatives(theta, x)
        n = r.sum(axis=2)
        grad = np.einsum("qjk,qjku->ju", r, g)
        info = np.einsum("qj,qjk,qjku,qjkw->juw", n, p, g, g)
        _, prior_grad, prior_curv = self._prior_terms(x, priors)
        grad += prior_grad
        info += prior_curv
        free = np.column_stack([np.ones(len(x), dtype=bool), self.valid])
        info = np.where(free[:, :, None] & free[:, None, :], info, 0.0)
        info[:, np.arange(self.width), np.arange(self.width)] += ~free
        step = np.linalg.solve(info, (grad * free)[:, :, None])[:, :, 0]
        length = np.ones(len(x))
        for _ in range(12):
            trial = self.clip(x + length[:, None] * step)
            worse = self.objective(theta, r, trial, priors) < before - 1e-12 * np.abs(before)
            if not worse.any():
                break
            length[worse] *= 0.5
        return np.where(worse[:, None], x, trial)

    # ------------------------------------------------------------------ standard errors
    def covariance(self, theta, post, indicators, x, priors: Priors, full_limit: int = 4000):
        """Cross-product (XPD) covariance of ``(log a, b_1, ..., b_{M-1})`` per item, (J, M, M), and the method.

        Person n's score is ``sum_q post[n, q] g_{y_n}(theta_q)`` (Louis 1982); the covariance is the
        inverse of the summed outer products plus the prior curvature (Paek & Cai 2014), over all
        parameters at once up to ``full_limit`` of them (as for dichotomous items), else per item.
        The GRM's is carried to the thresholds by the delta method. NaN past an item's last threshold.
        """
        _, g = self._derivatives(theta, x)
        n_items, m = x.shape
        flat = g.reshape(len(theta), n_items * m, m)
        free = np.column_stack([np.ones(n_items, dtype=bool), self.valid])
        n_params = int(free.sum())
        full = n_params <= full_limit
        cross = np.zeros((n_params, n_params) if full else (n_items, m, m))
        chunk = max(1, _SE_CHUNK_CELLS // (n_items * m))
        for start in range(0, indicators.shape[0], chunk):
            part = slice(start, start + chunk)
            rows = indicators[part]
            scores = np.stack(
                [_item_sums(rows.multiply(post[part] @ flat[:, :, u]), n_items, m) for u in range(m)], axis=-1
            )  # (n_part, J, M)
            if full:
                scores = scores[:, free]
                cross += scores.T @ scores
            else:
                cross += np.einsum("nju,njw->juw", scores, scores)
        curvature = self._prior_terms(x, priors)[2]
        if full:
            position = np.full((n_items, m), -1)
            position[free] = np.arange(n_params)
            for j in range(n_items):  # the prior adds within each item's block only
                index = position[j, free[j]]
                cross[np.ix_(index, index)] += curvature[j][np.ix_(free[j], free[j])]
            inverse = np.linalg.inv(cross)
            cov = np.zeros((n_items, m, m))
            for j in range(n_items):
                index = position[j, free[j]]
                cov[j][np.ix_(free[j], free[j])] = inverse[np.ix_(index, index)]
        else:
            cross += curvature
            cross = np.where(free[:, :, None] & free[:, None, :], cross, 0.0)
            cross[:, np.arange(m), np.arange(m)] += ~free
            cov = np.linalg.inv(cross)
        jac = np.zeros((n_items, m, m))
        jac[:, 0, 0] = 1.0
        jac[:, 1:, 1:] = self.jacobian(x)
        cov = np.einsum("jvu,juw,jzw->jvz", jac, cov, jac)
        return np.where(
            free[:, :, None] & free[:, None, :], cov, np.nan
        ), "xpd" if full else "xpd-item-blocks"


def _item_sums(cells, n_items: int, width: int) -> np.ndarray:
    """Sum a (n_persons, n_items * width) matrix over each item's categories: (n_persons, n_items)."""
    dense = cells.toarray() if sparse.issparse(cells) else np.asarray(cells)
    return dense.reshape(dense.shape[0], n_items, width).sum(axis=2)
