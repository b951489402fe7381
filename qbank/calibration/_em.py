"""Private kernels of the Bock-Aitkin EM: E-step, M-step, start values, standard errors.

Validation is assumed (see :mod:`qbank.calibration._calibrator`). Item parameters are carried
as ``x`` of shape ``(n_items, 3)`` holding ``(log a, b, c)`` in the logistic metric (D = 1);
the quadrature grid ``theta`` has shape ``(n_quad,)``. Expected counts ``r`` (correct) and
``n`` (answered) have shape ``(n_quad, n_items)``.

References
----------
Bock, R. D. & Aitkin, M. (1981). Marginal maximum likelihood estimation of item parameters:
application of an EM algorithm. *Psychometrika*, 46, 443-459.
Mislevy, R. J. (1986). Bayes modal estimation in item response models. *Psychometrika*, 51, 177-195.
Kim, S. (2006). A comparative study of IRT fixed parameter calibration methods. *Journal of
Educational Measurement*, 43, 355-381.
Paek, I. & Cai, L. (2014). A comparison of item parameter standard error estimation procedures
for unidimensional and multidimensional IRT modeling. *Educational and Psychological
Measurement*, 74, 58-76.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse
from scipy.special import expit, logit

from qbank import irt

LOGA, B, C = 0, 1, 2
# Bounds keep a Newton step from leaving the region where the likelihood is informative.
BOUNDS = np.array([[np.log(0.05), np.log(8.0)], [-8.0, 8.0], [0.0, 0.6]])
_P_EPS = 1e-10
_C_FLOOR = 1e-6  # a Beta prior on c needs c > 0
_SPARSE_SE_CHUNK = 500_000  # answered cells per chunk when forming sparse score vectors


@dataclass(frozen=True)
class Hierarchical:
    """A normal prior whose mean is re-estimated from the item estimates every EM cycle.

    Mislevy (1986, sec. 4) hierarchical Bayes modal estimation: ``v_i ~ N(mu, sd)`` with a
    hyperprior ``mu ~ N(mean, hyper_sd)``; ``sd`` stays fixed, because a spread re-estimated
    from shrunken modal estimates shrinks further every cycle.

    Attributes
    ----------
    mean : float
        Hyperprior mean of ``mu`` and its starting value.
    sd : float
        Fixed within-bank sd of the prior.
    hyper_sd : float
        Hyperprior sd of ``mu``; weak, but it keeps ``mu`` defined with very few items.
    """

    mean: float = 0.0
    sd: float = 0.5
    hyper_sd: float = 1.0

    def update(self, values: np.ndarray) -> float:
        """Posterior mode of ``mu`` given the current estimates ``values`` (n_items,).

        Normal-normal conjugacy: ``(sum v / sd^2 + mean / hyper_sd^2) / (n / sd^2 + 1 / hyper_sd^2)``.
        """
        values = np.asarray(values, dtype=float)
        precision = values.size / self.sd**2 + 1.0 / self.hyper_sd**2
        return float((values.sum() / self.sd**2 + self.mean / self.hyper_sd**2) / precision)


@dataclass(frozen=True)
class Priors:
    """MAP priors (Mislevy 1986); ``None`` switches one off.

    Attributes
    ----------
    loga : (mean, sd) of a normal prior on ``log a``, or None
    b : (mean, sd) of a normal prior on ``b``, or None
    c : (alpha, beta) of a Beta prior on ``c``, or None
    loga_hyper, b_hyper : Hierarchical or None
        When set, the mean of ``loga`` (``b``) is re-estimated every EM cycle
        (:meth:`with_hyper_update`); ``loga`` (``b``) then holds the current (mean, sd).
    """

    loga: tuple[float, float] | None = (0.0, 0.5)
    b: tuple[float, float] | None = None
    c: tuple[float, float] | None = (5.0, 17.0)
    loga_hyper: Hierarchical | None = None
    b_hyper: Hierarchical | None = None

    def with_hyper_update(self, x: np.ndarray, loga_rows: slice | None) -> tuple[Priors, float]:
        """Priors with every hierarchical mean re-estimated from ``x`` (n_items, 3), and the
        largest change of a mean; ``loga_rows`` selects the estimated log a (None: not estimated)."""
        loga, b, change = self.loga, self.b, 0.0
        if self.loga_hyper is not None and loga_rows is not None:
            loga = (self.loga_hyper.update(x[loga_rows, LOGA]), self.loga_hyper.sd)
            change = abs(loga[0] - self.loga[0])
        if self.b_hyper is not None:
            b = (self.b_hyper.update(x[:, B]), self.b_hyper.sd)
            change = max(change, abs(b[0] - self.b[0]))
        return replace(self, loga=loga, b=b), change

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """Log prior per item up to a constant, shape (n_items,)."""
        out = np.zeros(x.shape[0])
        if self.loga is not None:
            mean, sd = self.loga
            out -= 0.5 * ((x[:, LOGA] - mean) / sd) ** 2
        if self.b is not None:
            mean, sd = self.b
            out -= 0.5 * ((x[:, B] - mean) / sd) ** 2
        if self.c is not None:
            alpha, beta = self.c
            c = np.maximum(x[:, C], _C_FLOOR)
            out += (alpha - 1.0) * np.log(c) + (beta - 1.0) * np.log1p(-c)
        return out

    def gradient_curvature(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First derivative and minus the second derivative of the log prior, each (n_items, 3)."""
        grad = np.zeros_like(x)
        curv = np.zeros_like(x)
        if self.loga is not None:
            mean, sd = self.loga
            grad[:, LOGA] = -(x[:, LOGA] - mean) / sd**2
            curv[:, LOGA] = 1.0 / sd**2
        if self.b is not None:
            mean, sd = self.b
            grad[:, B] = -(x[:, B] - mean) / sd**2
            curv[:, B] = 1.0 / sd**2
        if self.c is not None:
            alpha, beta = self.c
            c = np.maximum(x[:, C], _C_FLOOR)
            grad[:, C] = (alpha - 1.0) / c - (beta - 1.0) / (1.0 - c)
            curv[:, C] = (alpha - 1.0) / c**2 + (beta - 1.0) / (1.0 - c) ** 2
        return grad, curv


def normal_weights(theta: np.ndarray, mean: float = 0.0, sd: float = 1.0) -> np.ndarray:
    """Quadrature weights of N(mean, sd) on the grid, normalised to sum 1, shape (n_quad,)."""
    density = np.exp(-0.5 * ((theta - mean) / sd) ** 2)
    return density / density.sum()


def latent_log_weights(theta: np.ndarray, post: np.ndarray, kind: str) -> np.ndarray:
    """Log quadrature weights of the latent distribution re-estimated from a posterior.

    ``'histogram'``: the mean posterior (the empirical histogram of Bock & Aitkin 1981, sec. 4;
    Kim 2006's MWU); ``'normal'``: a normal with the mean and sd of that histogram.
    """
    histogram = post.mean(axis=0)
    if kind == "histogram":
        return np.log(np.maximum(histogram, 1e-300))
    mean = histogram @ theta
    sd = np.sqrt(max(histogram @ theta**2 - mean**2, 1e-12))
    return np.log(normal_weights(theta, mean, sd))


def item_probability(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """3PL probability on the grid, clipped away from 0 and 1, shape (n_quad, n_items)."""
    p = irt.probability_elementwise(theta[:, None], np.exp(x[:, LOGA]), x[:, B], x[:, C])
    return np.clip(p, _P_EPS, 1.0 - _P_EPS)


def grid_log_likelihood(answered, correct, p: np.ndarray) -> np.ndarray:
    """``log P(y_n | theta_q)`` for every person and grid point, shape (n_persons, n_quad).

    Missing responses are zeros in both indicator matrices and so add nothing (Bock &
    Aitkin 1981, eq. 5, restricted to the items each person answered).
    """
    log_q = np.log1p(-p)
    return np.asarray(correct @ (np.log(p) - log_q).T) + np.asarray(answered @ log_q.T)


def posterior(loglik: np.ndarray, log_weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Normalised posterior over the grid (n_persons, n_quad) and the marginal log-likelihood."""
    log_post = loglik + log_weights
    peak = log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post - peak)
    total = post.sum(axis=1, keepdims=True)
    post /= total
    return post, float((peak + np.log(total)).sum())


def expected_counts(answered, correct, post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected correct ``r`` and answered ``n`` at each grid point, each (n_quad, n_items)."""
    return np.asarray(correct.T @ post).T, np.asarray(answered.T @ post).T


def _derivatives(theta, x):
    """P and dP/d(log a, b, c) on the grid; P (n_quad, n_items), dP (3, n_quad, n_items)."""
    a = np.exp(x[:, LOGA])
    z = irt.logit(theta[:, None], a, x[:, B])
    logistic = expit(z)
    p = np.clip(irt.probability_from_logistic(logistic, x[:, C]), _P_EPS, 1.0 - _P_EPS)
    slope = (1.0 - x[:, C]) * logistic * (1.0 - logistic)
    return p, np.stack([slope * z, -slope * a, 1.0 - logistic])


def item_objective(theta, r, n, x, priors: Priors) -> np.ndarray:
    """Expected complete-data log posterior per item, shape (n_items,)."""
    p = item_probability(theta, x)
    return (r * np.log(p) + (n - r) * np.log1p(-p)).sum(axis=0) + priors.log_density(x)


def _score_information(theta, r, n, x, priors, cols):
    """Gradient (n_items, k) and Fisher information (n_items, k, k) of the item objective."""
    p, dp = _derivatives(theta, x)
    dp = dp[cols]
    pq = p * (1.0 - p)
    grad = np.einsum("qj,kqj->jk", (r - n * p) / pq, dp)
    info = np.einsum("qj,kqj,lqj->jkl", n / pq, dp, dp)
    prior_grad, prior_curv = priors.gradient_curvature(x)
    grad += prior_grad[:, cols]
    info[:, np.arange(len(cols)), np.arange(len(cols))] += prior_curv[:, cols]
    return grad, info


def _clip(x):
    return np.clip(x, BOUNDS[:, 0], BOUNDS[:, 1])


def m_step(theta, r, n, x, priors: Priors, cols, shared_a: bool, n_newton: int = 1) -> np.ndarray:
    """Fisher-scoring steps on the expected complete-data log posterior, all items at once.

    Each step is halved (per item) until the objective does not decrease, so every M-step
    increases the EM objective (a generalised EM). With ``shared_a`` (1PL) one ``log a`` is
    common to all items and the arrow-shaped system is solved through its Schur complement.

    Parameters
    ----------
    x : ndarray of shape (n_items, 3)
    cols : list of int
        Parameters estimated (subset of LOGA, B, C); with ``shared_a`` exactly [LOGA, B].
    """
    cols = list(cols)
    for _ in range(n_newton):
        x = _shared_a_step(theta, r, n, x, priors) if shared_a else _item_step(theta, r, n, x, priors, cols)
    return x


def _item_step(theta, r, n, x, priors, cols):
    before = item_objective(theta, r, n, x, priors)
    grad, info = _score_information(theta, r, n, x, priors, cols)
    step = np.zeros_like(x)
    step[:, cols] = np.linalg.solve(info, grad[:, :, None])[:, :, 0]
    length = np.ones(x.shape[0])
    for _ in range(12):
        trial = _clip(x + length[:, None] * step)
        worse = item_objective(theta, r, n, trial, priors) < before - 1e-12 * np.abs(before)
        if not worse.any():
            break
        length[worse] *= 0.5
    return np.where(worse[:, None], x, trial)


def _shared_a_step(theta, r, n, x, priors):
    # The prior on the common log a counts once, not once per item.
    item_priors = Priors(loga=None, b=priors.b, c=None)
    shared = Priors(loga=priors.loga, b=None, c=None)

    def total(params):
        return item_objective(theta, r, n, params, item_priors).sum() + shared.log_density(params[:1])[0]

    before = total(x)
    grad, info = _score_information(theta, r, n, x, item_priors, [LOGA, B])
    prior_grad, prior_curv = shared.gradient_curvature(x[:1])
    g_a = grad[:, 0].sum() + prior_grad[0, LOGA]
    i_aa = info[:, 0, 0].sum() + prior_curv[0, LOGA]
    i_ab, i_bb, g_b = info[:, 0, 1], info[:, 1, 1], grad[:, 1]
    d_a = (g_a - (i_ab * g_b / i_bb).sum()) / (i_aa - (i_ab**2 / i_bb).sum())
    step = np.zeros_like(x)
    step[:, LOGA] = d_a
    step[:, B] = (g_b - i_ab * d_a) / i_bb
    length = 1.0
    for _ in range(12):
        trial = _clip(x + length * step)
        if total(trial) >= before - 1e-12 * abs(before):
            return trial
        length *= 0.5
    return x


def start_values(answered, correct, c_start, theta_start=None) -> np.ndarray:
    """Start values ``(log a, b, c)`` of shape (n_items, 3): ``a = 1``, ``c = c_start`` and ``b``
    from the item's score logit.

    Without ``theta_start`` the difficulty is ``-1.16 logit(p)`` (PROX for a unit-variance
    population; Linacre's normal approximation). With ``theta_start`` (person locations from
    the fixed items in a fixed-parameter calibration) it is the mean location of the item's
    takers minus that, so items given to able examinees start hard.
    """
    n_item, n_correct_item = (np.asarray(m.sum(axis=0)).ravel() for m in (answered, correct))
    p_item = np.clip(((n_correct_item + 0.5) / (n_item + 1.0) - c_start) / (1.0 - c_start), 0.02, 0.98)
    b = -np.sqrt(1.0 + 1.0 / 2.9) * logit(p_item)
    if theta_start is not None:
        b += np.asarray(answered.T @ theta_start).ravel() / np.maximum(n_item, 1)
    x = np.zeros((len(n_item), 3))
    x[:, B] = b
    x[:, C] = c_start
    return _clip(x)


def score_vectors(theta, post, answered, correct, x, cols, shared_a):
    """Per-person gradients of the marginal log-likelihood, shape (n_persons, n_params).

    Person n's score for item j is ``sum_q post[n, q] (y_nj - P_qj) dP_qj / (P_qj Q_qj)``
    (Louis 1982: the posterior expectation of the complete-data score). Columns are
    parameter-major (all ``log a``, then all ``b``, then all ``c``); with ``shared_a`` the
    ``log a`` block is one column, the sum over items. Dense or CSR like the responses.
    """
    p, dp = _derivatives(theta, x)
    pq = p * (1.0 - p)
    blocks = []
    if sparse.issparse(answered):
        rows, items = answered.nonzero()
        y = np.asarray(correct[rows, items]).ravel()
        for k in cols:
            h = dp[k] / pq
            values = np.empty(len(rows))
            for start in range(0, len(rows), _SPARSE_SE_CHUNK):
                part = slice(start, start + _SPARSE_SE_CHUNK)
                w, hj, phj = post[rows[part]], h.T[items[part]], (p * h).T[items[part]]
                values[part] = y[part] * np.einsum("iq,iq->i", w, hj) - np.einsum("iq,iq->i", w, phj)
            blocks.append(sparse.csr_matrix((values, (rows, items)), shape=answered.shape))
        if shared_a and LOGA in cols:
            blocks[0] = sparse.csr_matrix(np.asarray(blocks[0].sum(axis=1)))
        return sparse.hstack(blocks, format="csr")
    for k in cols:
        h = dp[k] / pq
        blocks.append(correct * (post @ h) - answered * (post @ (p * h)))
    if shared_a and LOGA in cols:
        blocks[0] = blocks[0].sum(axis=1, keepdims=True)
    return np.hstack(blocks)


def cross_product_covariance(scores, prior_curvature, n_items, n_cols, full_limit=4000):
    """Covariance of the estimates from the cross-product (XPD) information plus prior curvature.

    ``inv(sum_n s_n s_n' + diag(prior curvature))`` (Paek & Cai 2014); above ``full_limit``
    parameters only the per-item blocks are inverted.

    Returns
    -------
    variances : ndarray of shape (n_params,)
    method : str
    """
    n_params = scores.shape[1]
    if n_params <= full_limit:
        info = scores.T @ scores
        info = info.toarray() if sparse.issparse(info) else np.asarray(info)
        info[np.diag_indices(n_params)] += prior_curvature
        try:
            return np.diag(np.linalg.inv(info)).copy(), "xpd"
        except np.linalg.LinAlgError:
            pass
    # Per-item blocks: parameter k of item j sits at column k * n_items + j.
    squares = (
        scores.multiply(scores).sum(axis=0) if sparse.issparse(scores) else (scores * scores).sum(axis=0)
    )
    squares = np.asarray(squares).ravel() + prior_curvature
    if n_cols == 1 or n_params != n_cols * n_items:
        return 1.0 / squares, "xpd-diagonal"
    cross = np.zeros((n_items, n_cols, n_cols))
    for k in range(n_cols):
        for m in range(n_cols):
            sk = scores[:, k * n_items : (k + 1) * n_items]
            sm = scores[:, m * n_items : (m + 1) * n_items]
            prod = sk.multiply(sm).sum(axis=0) if sparse.issparse(scores) else (sk * sm).sum(axis=0)
            cross[:, k, m] = np.asarray(prod).ravel()
    cross[:, np.arange(n_cols), np.arange(n_cols)] += prior_curvature.reshape(n_cols, n_items).T
    inverse = np.linalg.inv(cross)
    return inverse[:, np.arange(n_cols), np.arange(n_cols)].T.ravel(), "xpd-item-blocks"


def latent_moments(theta, log_weights):
    """Mean and sd of the latent distribution given by log weights on the grid."""
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    mean = float(weights @ theta)
    return mean, float(np.sqrt(max(weights @ theta**2 - mean**2, 0.0)))


def natural(x):
    """(a, b, c) from (log a, b, c), for the convergence check in the reported metric."""
    return np.column_stack([np.exp(x[:, LOGA]), x[:, B], x[:, C]])
