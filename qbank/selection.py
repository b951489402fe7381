"""Item selection: one batch-shaped function shared by the simulator and the service.

:func:`select_next` chooses the next item for ``n_examinees`` at once. The simulator calls it
with thousands of rows per test step; the delivery service calls it with one row for one
student. Rules:

- ``max_info``: the available item with the largest Fisher information at the current
  estimate (Lord 1980); in a mixed pool each item's own model's information
  (:mod:`qbank.polytomous`).
- ``randomesque``: uniformly one of the ``k`` most informative available items (Kingsbury &
  Zara 1989).
- ``sympson_hetter``: maximum information under exposure control (Sympson & Hetter 1985). The
  best available item is *selected*; it is *administered* when the examinee's uniform draw for
  that item is ``<= sh_p[item]``, otherwise it is withdrawn for the rest of that examinee's test
  and the next best is tried within the same step.
- ``conditional_sympson_hetter``: as above with one ``sh_p`` per theta stratum, the stratum
  taken from the current estimate (Stocking & Lewis 1998).
- ``a_stratified``: the pool split into ``n_strata`` strata of ascending ``a``; test position
  ``p`` of ``L`` uses stratum ``floor(p * n_strata / L)``, and within it the item whose ``b``
  is closest to the estimate (Chang & Ying 1999).

Exposure draws: every (examinee, item) pair is considered at most once per test under
Sympson-Hetter (a rejected item is withdrawn, an accepted one administered), so one uniform
per pair, drawn when the test starts (:func:`exposure_draws`), has exactly the distribution of
a fresh draw at each consideration, and makes any served sequence replayable from the seed.
"""

from __future__ import annotations

import hashlib
from dataclasses import InitVar, dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from qbank._index import InformationIndex, _pick_bounded
from qbank._selection_mixed import candidate_information, pool_information
from qbank.irt import information_from_factors, logit
from qbank.pool import ItemPool

__all__ = [
    "RULES",
    "InformationIndex",
    "Selection",
    "Selector",
    "blueprint_mask",
    "exposure_draws",
    "select_next",
    "session_rng",
    "sh_p_from_frame",
]

RULES = (
    "max_info",
    "randomesque",
    "sympson_hetter",
    "conditional_sympson_hetter",
    "a_stratified",
)
EXPOSURE_CONTROLLED = ("sympson_hetter", "conditional_sympson_hetter")


@dataclass(frozen=True, eq=False)
class Selector:
    """Configuration of a selection rule (see the module docstring for the rules).

    Parameters
    ----------
    rule : str
        One of :data:`RULES`.
    randomesque_size : int
        Randomesque group size: the next item is drawn among this many most informative ones
        (Kingsbury & Zara 1989). Not to be confused with the exposure-control parameter
        ``sh_p`` (K).
    n_strata : int
        Number of a-strata.
    sh_p : ndarray of shape (n_items,) or (n_items, n_theta_strata), optional
        Sympson-Hetter exposure-control parameters ``K_i`` in [0, 1] (per theta stratum for
        the conditional rule), in pool order.
    theta_cuts : ndarray of shape (n_theta_strata - 1,), optional
        Increasing cut points of the theta strata (conditional rule): stratum ``j`` holds
        ``theta_cuts[j-1] <= theta < theta_cuts[j]``.
    k : int, optional
        Former name of ``randomesque_size``, still accepted (keyword only).
    """

    rule: str = "max_info"
    randomesque_size: int = 5
    n_strata: int = 4
    sh_p: np.ndarray | None = None
    theta_cuts: np.ndarray | None = None
    k: InitVar[int | None] = None

    def __post_init__(self, k):
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {list(RULES)}, got {self.rule!r}")
        if k is not None:
            object.__setattr__(self, "randomesque_size", k)
        if self.randomesque_size < 1:
            raise ValueError(f"randomesque_size must be >= 1, got {self.randomesque_size}")
        if self.n_strata < 1:
            raise ValueError(f"n_strata must be >= 1, got {self.n_strata}")
        if self.rule in EXPOSURE_CONTROLLED:
            if self.sh_p is None:
                raise ValueError(f"rule {self.rule!r} needs sh_p")
            sh_p = np.asarray(self.sh_p, dtype=float)
            if np.any(~np.isfinite(sh_p)) or np.any((sh_p < 0) | (sh_p > 1)):
                raise ValueError("sh_p must be in [0, 1]")
            object.__setattr__(self, "sh_p", sh_p)
            if self.rule == "sympson_hetter" and sh_p.ndim != 1:
                raise ValueError(f"sympson_hetter needs sh_p of shape (n_items,), got {sh_p.shape}")
            if self.rule == "conditional_sympson_hetter":
                if sh_p.ndim != 2 or self.theta_cuts is None:
                    raise ValueError(
                        "conditional_sympson_hetter needs sh_p of shape (n_items, n_theta_strata) and theta_cuts"
                    )
                cuts = np.asarray(self.theta_cuts, dtype=float)
                if cuts.ndim != 1 or cuts.size != sh_p.shape[1] - 1 or np.any(np.diff(cuts) <= 0):
                    raise ValueError(
                        f"theta_cuts must be {sh_p.shape[1] - 1} increasing cut points for "
                        f"{sh_p.shape[1]} strata, got {cuts.tolist()}"
                    )
                object.__setattr__(self, "theta_cuts", cuts)

    @property
    def uses_exposure_draws(self) -> bool:
        return self.rule in EXPOSURE_CONTROLLED

    @property
    def depth(self) -> int:
        """How many top-ranked available items a step must know exactly."""
        return self.randomesque_size if self.rule == "randomesque" else 1

    def theta_stratum(self, theta_hat) -> np.ndarray:
        """Theta stratum of each estimate (conditional rule); zeros otherwise."""
        if self.theta_cuts is None:
            return np.zeros(np.shape(theta_hat), dtype=np.intp)
        return np.searchsorted(self.theta_cuts, theta_hat, side="right")

    def check_pool(self, pool: ItemPool) -> None:
        if self.sh_p is not None and self.sh_p.shape[0] != pool.n_items:
            raise ValueError(f"sh_p has {self.sh_p.shape[0]} items but the pool has {pool.n_items}")

    def to_dict(self) -> dict:
        out = {"rule": self.rule}
        if self.rule == "randomesque":
            out["k"] = self.randomesque_size  # the key quiz records and flags use
        if self.rule == "a_stratified":
            out["n_strata"] = self.n_strata
        if self.theta_cuts is not None:
            out["theta_cuts"] = self.theta_cuts.tolist()
        return out


# The former name, read-only: ``k`` is an init-only keyword of the dataclass, so the alias is
# attached after the class is built (a property in the body would become its default).
Selector.k = property(lambda self: self.randomesque_size, doc="Former name of randomesque_size.")


@dataclass(frozen=True)
class Selection:
    """Result of one selection step.

    Attributes
    ----------
    item : ndarray of shape (n_examinees,)
        Pool position of the item to administer; -1 where no item is left.
    withdrawn_rows, withdrawn_items : ndarray of shape (n_withdrawn,)
        (examinee row, pool position) of items selected but rejected by their exposure draw in
        this step; they must not be offered to that examinee again.
    """

    item: np.ndarray
    withdrawn_rows: np.ndarray
    withdrawn_items: np.ndarray

    def withdrawn_mask(self, n_items: int) -> np.ndarray:
        mask = np.zeros((self.item.shape[0], n_items), dtype=bool)
        mask[self.withdrawn_rows, self.withdrawn_items] = True
        return mask


def session_rng(session_id: str) -> np.random.Generator:
    """A generator derived from a quiz/session id, so a served sequence can be replayed."""
    digest = hashlib.sha256(str(session_id).encode("utf-8")).digest()
    return np.random.default_rng(list(np.frombuffer(digest, dtype=np.uint32)))


def exposure_draws(rng: np.random.Generator, n_examinees: int, n_items: int) -> np.ndarray:
    """One uniform per (examinee, item), drawn once per test (see the module docstring)."""
    return rng.random((n_examinees, n_items))


def blueprint_mask(topic_codes, administered_per_topic, *, maximum=None, minimum=None, remaining=None):
    """Items allowed by per-topic content quotas, shape (n_examinees, n_items).

    Parameters
    ----------
    topic_codes : ndarray of shape (n_items,)
        Topic index (0..n_topics-1) of each item.
    administered_per_topic : ndarray of shape (n_examinees, n_topics)
        Items already administered per topic.
    maximum : ndarray of shape (n_topics,), optional
        At most this many items per topic.
    minimum : ndarray of shape (n_topics,), optional
        At least this many per topic; once the remaining positions (``remaining``, shape
        (n_examinees,)) are only enough for the unmet minimums, only topics below their
        minimum stay open.
    """
    counts = np.atleast_2d(np.asarray(administered_per_topic))
    allowed = np.ones(counts.shape, dtype=bool)
    if maximum is not None:
        allowed &= counts < np.asarray(maximum)
    if minimum is not None:
        if remaining is None:
            raise ValueError("minimum quotas need the number of remaining positions")
        deficit = np.clip(np.asarray(minimum) - counts, 0, None)
        forced = deficit.sum(axis=1) >= np.asarray(remaining)
        allowed &= ~forced[:, None] | (deficit > 0)
    return allowed[:, np.asarray(topic_codes)]


def sh_p_from_frame(frame, pool: ItemPool, source: str = "k-file") -> np.ndarray:
    """sh_p per pool item from a frame with columns ``item_id, sh_p``; every pool item must appear.

    Raises
    ------
    ValueError
        Naming the bad lines (1-based, header = line 1) or item ids.
    """
    missing = {"item_id", "sh_p"} - set(frame.columns)
    if missing:
        raise ValueError(f"{source}: missing column(s) {sorted(missing)}")
    sh_p = pd.to_numeric(frame["sh_p"], errors="coerce")
    bad = sh_p.isna() | (sh_p < 0) | (sh_p > 1)
    if bad.any():
        rows = (np.flatnonzero(bad.to_numpy()) + 2).tolist()[:10]
        raise ValueError(f"{source}: sh_p must be a number in [0, 1]; bad line(s) {rows}")
    ids = frame["item_id"].astype(str)
    if ids.duplicated().any():
        raise ValueError(f"{source}: duplicate item_id {sorted(ids[ids.duplicated()])[:10]}")
    by_id = dict(zip(ids, sh_p))
    unknown = sorted(set(by_id) - set(pool.item_id))
    if unknown:
        raise ValueError(f"{source}: item_id not in the pool: {unknown[:10]}")
    absent = [i for i in pool.item_id if i not in by_id]
    if absent:
        raise ValueError(f"{source}: no sh_p for {len(absent)} pool item(s), e.g. {absent[:10]}")
    return np.array([by_id[i] for i in pool.item_id], dtype=float)


# ---------------------------------------------------------------------------- kernels
def _rank_and_pick(info, item_pos, available, eligible, depth, step_draws):
    """Pick per row among candidate columns (validation assumed).

    info, available, eligible : (n, m); eligible may be None. item_pos : (n, m) pool positions
    of the columns, or None when column ``j`` is pool position ``j``.
    Returns chosen column (n,) (-1 if none), the information of the deepest item the choice
    relied on (n,) (-inf if none, or fewer than ``depth`` items to rank) and the withdrawn
    entries as flat indices into the (n, m) block, in row-major order.
    """
    n, m = info.shape
    rows = np.arange(n)
    ok = available if eligible is None else available & eligible
    masked = np.where(ok, info, -np.inf)
    if depth == 1:
        column = np.argmax(masked, axis=1)
        value = masked[rows, column]
        relied_on = value
    else:
        order = np.argsort(-masked, axis=1, kind="stable")
        n_ok = ok.sum(axis=1)
        group = np.minimum(depth, n_ok)
        rank = np.minimum((step_draws * group).astype(np.intp), np.maximum(group - 1, 0))
        column = order[rows, rank]
        value = masked[rows, column]
        # Fewer than `depth` choices among candidates may mean more exist outside them.
        relied_on = np.where(n_ok >= depth, masked[rows, order[rows, np.maximum(group - 1, 0)]], -np.inf)
    has_item = np.isfinite(value)
    column = np.where(has_item, column, -1)
    if eligible is None:
        return column, relied_on, np.empty(0, np.intp)
    # Available items the draw rejects: withdrawn when they rank above the choice (pool
    # position breaks ties, as the full pool's argmax does).
    rejected = np.flatnonzero(available & ~eligible)
    r = rejected // m
    chosen = np.maximum(column, 0)
    if item_pos is None:
        rejected_pos, chosen_pos = rejected - r * m, chosen
    else:
        rejected_pos, chosen_pos = np.ravel(item_pos).take(rejected), item_pos[rows, chosen]
    rejected_info, chosen_info = np.ravel(info).take(rejected), value[r]
    above = (rejected_info > chosen_info) | ((rejected_info == chosen_info) & (rejected_pos < chosen_pos[r]))
    return column, relied_on, rejected[above | ~has_item[r]]


def _eligibility(selector, draws, item_pos, theta_hat):
    if not selector.uses_exposure_draws:
        return None
    if selector.sh_p.ndim == 1:
        sh_p = selector.sh_p[item_pos]
    else:
        sh_p = selector.sh_p[item_pos, selector.theta_stratum(theta_hat)[:, None]]
    return draws <= sh_p


def _select_full(pool, theta_hat, available, selector, draws, step_draws, eligible=None):
    info = pool_information(pool, theta_hat)
    if eligible is None:
        item_pos = np.broadcast_to(np.arange(pool.n_items), available.shape)
        eligible = _eligibility(selector, draws, item_pos, theta_hat)
    column, _, withdrawn = _rank_and_pick(info, None, available, eligible, selector.depth, step_draws)
    rows, cols = np.divmod(withdrawn, pool.n_items)
    return column, rows, cols


def _select_indexed(pool, theta_hat, available, selector, draws, step_draws, tiers, eligible=None):
    """Try each index tier in turn on the rows not yet decided exactly; the rest use the full pool.

    ``eligible`` (n, n_items), when given, is ``draws <= sh_p`` computed once per test (classic
    Sympson-Hetter) and replaces ``draws``."""
    n = theta_hat.shape[0]
    n_items = available.shape[1]
    item = np.full(n, -1, dtype=np.intp)
    w_rows, w_items = [], []
    pending = np.arange(n)
    flat_available = np.ravel(available)
    flat_exposure = np.ravel(eligible) if eligible is not None else None if draws is None else np.ravel(draws)
    for index in tiers:
        if pending.size == 0:
            break
        cell = index.cell_of(theta_hat[pending])
        inside_cell = cell >= 0
        inside = pending[inside_cell]
        cells = cell[inside_cell]
        undecided = [pending[~inside_cell]]
        if inside.size:
            cand = index.candidates.take(cells, axis=0)
            # Gather only the candidate cells: never copy the full (n, n_items) matrices. A take
            # with flat indices is several times faster than the same 2-D fancy index.
            flat = inside[:, None] * n_items + cand
            avail = flat_available.take(flat)
            if flat_exposure is None:
                ok = None
            elif eligible is not None:
                ok = flat_exposure.take(flat)
            else:
                ok = _eligibility(selector, flat_exposure.take(flat), cand, theta_hat[inside])
            if selector.depth == 1:
                column, relied_on, withdrawn = _pick_bounded(index, cells, theta_hat[inside], cand, avail, ok)
            else:
                if index.codes is not None:
                    entries = np.arange(cand.size)
                    info = candidate_information(index, cells, theta_hat[inside], entries).reshape(cand.shape)
                else:
                    scaled_a, b, c, scale, one_minus_c = index.parameters[:, cells]
                    logistic = expit(logit(theta_hat[inside, None], scaled_a, b))
                    info = information_from_factors(logistic, scale, one_minus_c, c)
                sd = None if step_draws is None else step_draws[inside]
                column, relied_on, withdrawn = _rank_and_pick(info, cand, avail, ok, selector.depth, sd)
            exact = relied_on > index.outside_max[cells]
            good = np.flatnonzero(exact)
            item[inside[good]] = cand[good, column[good]]
            r = withdrawn // cand.shape[1]
            decided = exact[r]
            w_rows.append(inside[r[decided]])
            w_items.append(np.ravel(cand).take(withdrawn[decided]))
            undecided.append(inside[~exact])
        pending = np.sort(np.concatenate(undecided))
    if pending.size:
        sd = None if step_draws is None else step_draws[pending]
        dr = None if draws is None else draws[pending]
        el = None if eligible is None else eligible[pending]
        column, r, c = _select_full(pool, theta_hat[pending], available[pending], selector, dr, sd, el)
        item[pending] = column
        w_rows.append(pending[r])
        w_items.append(c)
    if w_rows:
        # (row, item) keys are unique (one tier or the whole pool decides a row): sorting them is
        # the lexsort by row then item, in a twentieth of its time
        key = np.sort(np.concatenate(w_rows) * n_items + np.concatenate(w_items))
        rows = key // n_items
        return item, rows, key - rows * n_items
    return item, np.empty(0, np.intp), np.empty(0, np.intp)


def _a_strata(pool: ItemPool, n_strata: int) -> np.ndarray:
    stratum = np.empty(pool.n_items, dtype=np.intp)
    for s, members in enumerate(np.array_split(np.argsort(pool.a, kind="stable"), n_strata)):
        stratum[members] = s
    return stratum


def _select_a_stratified(pool, theta_hat, available, selector, position, test_length):
    n_strata = min(selector.n_strata, pool.n_items)
    current = min(position * n_strata // max(test_length, 1), n_strata - 1)
    in_stratum = (_a_strata(pool, n_strata) == current)[None, :]
    distance = np.abs(pool.b[None, :] - theta_hat[:, None])
    preferred = available & in_stratum
    # An exhausted stratum falls back to every available item rather than ending the test.
    use = np.where(preferred.any(axis=1, keepdims=True), preferred, available)
    masked = np.where(use, distance, np.inf)
    column = np.argmin(masked, axis=1)
    item = np.where(np.isfinite(masked[np.arange(theta_hat.size), column]), column, -1)
    return item


# ---------------------------------------------------------------------------- public
def select_next(
    pool: ItemPool,
    theta_hat,
    available,
    *,
    selector: Selector,
    position: int = 0,
    test_length: int | None = None,
    exposure_draws=None,
    step_draws=None,
    index=None,
    eligible=None,
) -> Selection:
    """Choose the next item for every examinee (one test step).

    Parameters
    ----------
    pool : ItemPool
    theta_hat : array_like of shape (n_examinees,)
        Current ability estimates.
    available : array_like of shape (n_examinees, n_items), bool
        Items each examinee may still get: not administered, not withdrawn, and allowed by
        filters and content quotas (see :func:`blueprint_mask`).
    selector : Selector
    position : int
        0-based test position of this step (a-stratified).
    test_length : int, optional
        (Maximum) test length (a-stratified).
    exposure_draws : ndarray of shape (n_examinees, n_items), optional
        Per-test uniforms from :func:`exposure_draws`; required for Sympson-Hetter rules.
    step_draws : ndarray of shape (n_examinees,), optional
        Uniforms for this step; required for randomesque.
    index : InformationIndex or sequence of them, optional
        Exact accelerator for information ranking (tiers of increasing depth); results are
        identical with or without it.
    eligible : ndarray of shape (n_examinees, n_items), bool, optional
        Classic Sympson-Hetter only: ``exposure_draws <= sh_p``, which is fixed for a whole test
        (the simulator computes it once per test); given instead of ``exposure_draws``, same
        result.

    Returns
    -------
    Selection

    References
    ----------
    Sympson, J. B. & Hetter, R. D. (1985). Controlling item-exposure rates in computerized
    adaptive testing. *Proc. 27th Annual Meeting of the Military Testing Association*, 973-977.
    """
    theta_hat = np.atleast_1d(np.asarray(theta_hat, dtype=float))
    available = np.atleast_2d(np.asarray(available, dtype=bool))
    n = theta_hat.shape[0]
    if available.shape != (n, pool.n_items):
        raise ValueError(f"available must have shape ({n}, {pool.n_items}), got {available.shape}")
    selector.check_pool(pool)
    if eligible is not None:
        if selector.rule != "sympson_hetter":
            raise ValueError(f"eligible is for rule 'sympson_hetter', got {selector.rule!r}")
        eligible = np.atleast_2d(np.asarray(eligible, dtype=bool))
        if eligible.shape != available.shape:
            raise ValueError(f"eligible must have shape {available.shape}, got {eligible.shape}")
        exposure_draws = None
    elif selector.uses_exposure_draws:
        if exposure_draws is None:
            raise ValueError(f"rule {selector.rule!r} needs exposure_draws")
        exposure_draws = np.atleast_2d(np.asarray(exposure_draws, dtype=float))
        if exposure_draws.shape != available.shape:
            raise ValueError(f"exposure_draws must have shape {available.shape}, got {exposure_draws.shape}")
    else:
        exposure_draws = None
    if selector.rule == "randomesque":
        if step_draws is None:
            raise ValueError("randomesque needs step_draws")
        step_draws = np.atleast_1d(np.asarray(step_draws, dtype=float))
    else:
        step_draws = None

    empty = np.empty(0, np.intp)
    if selector.rule == "a_stratified":
        item = _select_a_stratified(pool, theta_hat, available, selector, position, test_length or 1)
        return Selection(item, empty, empty)
    if index is None:
        item, rows, items = _select_full(
            pool, theta_hat, available, selector, exposure_draws, step_draws, eligible
        )
    else:
        tiers = (index,) if isinstance(index, InformationIndex) else tuple(index)
        item, rows, items = _select_indexed(
            pool, theta_hat, available, selector, exposure_draws, step_draws, tiers, eligible
        )
    return Selection(np.asarray(item, dtype=np.intp), np.asarray(rows, np.intp), np.asarray(items, np.intp))
