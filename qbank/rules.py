"""The complete rules of one CAT, built in one place: from a bundle or from explicit settings.

:class:`CatRules` holds everything that decides what an examinee meets: the selector with its
exposure-control parameters ``K`` (``sh_p``, per item or per theta stratum), the ability
estimator with its grid and prior, the stopping rule and the first-item rule.
:func:`rules_from_bundle` builds it from an exposure bundle (validation, ``qbank simulate
--bundle``, drift prediction, re-estimation and the delivery service all call it);
:func:`rules_from_settings` builds it from explicit settings (quizzes with no bundle, studies).
Nothing else builds rules.

One examinee's test, step by step, is :func:`run_test`: the delivery service takes the same
steps (:meth:`CatRules.first_estimate`, :meth:`CatRules.select`, :meth:`CatRules.estimate`,
with the draws of :meth:`CatRules.session_draws`), so a served quiz replays here bit for bit
(:func:`audit_test` says where a recorded quiz departs from its rules, if anywhere).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from qbank.estimation import EAP, make_estimator
from qbank.pool import ItemPool
from qbank.selection import Selector, blueprint_mask, exposure_draws, select_next, session_rng
from qbank.stopping import FixedLength, StandardError

__all__ = [
    "FIRST_ITEM_RULES",
    "CatRules",
    "FirstItem",
    "TestRecord",
    "audit_test",
    "check_category_responses",
    "estimator_from_dict",
    "estimator_to_dict",
    "first_estimate",
    "rules_from_bundle",
    "rules_from_settings",
    "run_test",
    "stopping_from_dict",
]

FIRST_ITEM_RULES = ("prior_mean", "theta")


@dataclass(frozen=True)
class FirstItem:
    """Where the first item is chosen: at the estimator's starting estimate (``prior_mean``: the
    EAP of the prior, or the prior mean), or at a fixed ``theta``."""

    rule: str = "prior_mean"
    theta: float | None = None

    def __post_init__(self):
        if self.rule not in FIRST_ITEM_RULES:
            raise ValueError(f"first_item.rule must be one of {list(FIRST_ITEM_RULES)}, got {self.rule!r}")
        if self.rule == "theta" and (self.theta is None or not np.isfinite(self.theta)):
            raise ValueError(f"first_item.theta must be a finite number, got {self.theta!r}")

    def to_dict(self) -> dict:
        return {"rule": self.rule} if self.rule == "prior_mean" else {"rule": self.rule, "theta": self.theta}

    @classmethod
    def from_dict(cls, table: dict | None) -> FirstItem:
        table = table or {"rule": "prior_mean"}
        return cls(table["rule"], None if table.get("theta") is None else float(table["theta"]))


def first_estimate(estimator, first_item: FirstItem, n_examinees: int) -> tuple[np.ndarray, np.ndarray]:
    """Estimate and SE before any answer, shape (n_examinees,), where the first item is chosen:
    the estimator's estimate with no answers (EAP: the prior's mean and SD on its grid; MAP /
    MLE: the prior mean, SD 1 without a prior), or ``first_item.theta``. The simulator and the
    service both start here."""
    if isinstance(estimator, EAP):
        no_answers = np.empty((1, 0))
        theta, se = estimator.estimate(no_answers, no_answers, no_answers, no_answers, no_answers)
        theta, se = np.full(n_examinees, theta[0]), np.full(n_examinees, se[0])
    else:
        theta = np.full(n_examinees, float(getattr(estimator, "prior_mean", 0.0)))
        se = np.full(n_examinees, float(getattr(estimator, "prior_sd", 1.0)))
    if first_item.rule == "theta":
        theta = np.full(n_examinees, float(first_item.theta))
    return theta, se


def estimator_to_dict(estimator) -> dict:
    """``{name, **constructor parameters}``: every parameter of the estimator's dataclass, so new
    constructor arguments travel without a schema change."""
    params = {}
    for f in dataclasses.fields(estimator):
        value = getattr(estimator, f.name)
        params[f.name] = list(value) if isinstance(value, tuple) else value
    return {"name": type(estimator).__name__.lower(), **params}


def estimator_from_dict(table: dict):
    """The estimator :func:`estimator_to_dict` wrote (lists become tuples, e.g. ``bounds``)."""
    params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in table.items() if k != "name"}
    try:
        return make_estimator(table["name"], **params)
    except TypeError as exc:
        raise ValueError(f"estimator: {exc}") from None


def stopping_from_dict(table: dict):
    """A stopping rule from its ``to_dict()`` form."""
    if table["rule"] == "fixed_length":
        return FixedLength(int(table["length"]))
    if table["rule"] == "standard_error":
        return StandardError(float(table["se_target"]), int(table["min_length"]), int(table["max_length"]))
    raise ValueError(f"stopping.rule must be fixed_length or standard_error, got {table['rule']!r}")


@dataclass(frozen=True, eq=False)
class CatRules:
    """The complete rules of a CAT (build with :func:`rules_from_bundle` or :func:`rules_from_settings`).

    Attributes
    ----------
    selector : Selector
        Rule and, for Sympson-Hetter, ``K`` in pool order.
    estimator : EAP, MAP or MLE
    stopping : FixedLength or StandardError
    first_item : FirstItem
    exposure_target : float or None
        ``r_max`` of the bundle (what exposure rates are judged against).
    strata_cuts : ndarray or None
        Theta cut points of a conditional bundle.
    origin : dict
        Where the rules come from: ``{"bundle_sha256", "pool_id"}`` or ``{"settings": True}``.
    """

    selector: Selector
    estimator: object
    stopping: object
    first_item: FirstItem = field(default_factory=FirstItem)
    exposure_target: float | None = None
    strata_cuts: np.ndarray | None = None
    origin: dict = field(default_factory=lambda: {"settings": True})

    def to_dict(self) -> dict:
        """The rules without ``K`` (which stays in the bundle): selector, estimator, stopping, first item."""
        return {
            "selector": self.selector.to_dict(),
            "estimator": estimator_to_dict(self.estimator),
            "stopping": self.stopping.to_dict(),
            "first_item": self.first_item.to_dict(),
            "exposure_target": self.exposure_target,
            **self.origin,
        }

    def simulation_kwargs(self) -> dict:
        """Keyword arguments of :func:`qbank.simulate` that run these rules."""
        kwargs = {
            "selector": self.selector,
            "stopping": self.stopping,
            "estimator": self.estimator,
            "first_item": self.first_item,
            "exposure_target": self.exposure_target,
        }
        if self.strata_cuts is not None:
            kwargs["strata_cuts"] = self.strata_cuts
        return kwargs

    # ------------------------------------------------------------------ one examinee's steps
    def first_estimate(self, n_examinees: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Estimate and SE before any answer, shape (n_examinees,): the first item is chosen there."""
        return first_estimate(self.estimator, self.first_item, n_examinees)

    def estimate(self, pool: ItemPool, items, responses) -> tuple[float, float]:
        """Estimate and SE of one examinee after answering pool positions ``items``.

        ``responses`` are the category scores ``0 .. m-1`` of the items (0/1 for a dichotomous
        item); a score an item does not have raises ``ValueError`` naming the item."""
        items = np.asarray(items, dtype=np.intp)
        responses = np.asarray(responses, dtype=float)[None, :]
        categories = {}
        if pool.is_polytomous:
            check_category_responses(pool, items, responses[0])
            categories = {
                "model": pool.item_model[items][None, :],
                "thresholds": pool.thresholds[items][None],
            }
        theta, se = self.estimator.estimate(
            pool.a[items][None, :],
            pool.b[items][None, :],
            pool.c[items][None, :],
            pool.D[items][None, :],
            responses,
            **categories,
        )
        return float(theta[0]), float(se[0])

    def session_draws(self, session_id: str, n_items: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The random draws of one test from :func:`qbank.selection.session_rng` of its id, in this
        order: the per-test exposure uniforms ``(1, n_items)`` (Sympson-Hetter rules only), then one
        uniform per position ``(max_length,)`` (randomesque only)."""
        rng = session_rng(session_id)
        draws = exposure_draws(rng, 1, n_items) if self.selector.uses_exposure_draws else None
        steps = rng.random(self.stopping.max_length) if self.selector.rule == "randomesque" else None
        return draws, steps

    def select(self, pool: ItemPool, theta: float, available, position: int, draws, steps):
        """One selection step for one examinee (:func:`qbank.selection.select_next`)."""
        return select_next(
            pool,
            np.array([theta]),
            np.asarray(available, dtype=bool)[None, :],
            selector=self.selector,
            position=position,
            test_length=self.stopping.max_length,
            exposure_draws=draws,
            step_draws=None if steps is None else steps[position : position + 1],
        )

    def done(self, n_answered: int, se: float) -> bool:
        return bool(self.stopping.done(n_answered, se))


def check_category_responses(pool: ItemPool, items, responses) -> None:
    """Raise ``ValueError`` naming the items whose response is not one of their category scores
    ``0 .. m-1`` (NaN, not administered, passes)."""
    items = np.asarray(items, dtype=np.intp)
    responses = np.asarray(responses, dtype=float)
    if responses.shape != items.shape:
        raise ValueError(f"responses: {responses.size} values for {items.size} items")
    n_categories = pool.n_categories[items]
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(responses) & (
            (responses != np.floor(responses)) | (responses < 0) | (responses >= n_categories)
        )
    if bad.any():
        shown = [
            f"{pool.item_id[i]}: {r:g} (scores 0..{m - 1})"
            for i, r, m in zip(items[bad], responses[bad], n_categories[bad])
        ]
        raise ValueError(f"responses must be a category score of the item; bad items: {shown[:10]}")


def _k_in_pool_order(bundle: dict, pool: ItemPool, item_ids) -> np.ndarray:
    """The bundle's K per pool position; 1 (no control) for a pool item the bundle does not hold."""
    n_strata = len(bundle["strata"]["theta_cuts"]) + 1 if bundle.get("strata") else None
    by_id = {item["item_id"]: item["sh_p"] for item in bundle["items"]}
    ids = pool.item_id if item_ids is None else item_ids
    shape = (pool.n_items,) if n_strata is None else (pool.n_items, n_strata)
    k = np.ones(shape)
    for position, item_id in enumerate(ids):
        value = by_id.get(str(item_id))
        if value is not None:
            k[position] = value
    return k


def rules_from_bundle(bundle: dict, pool: ItemPool | None = None, *, item_ids=None) -> CatRules:
    """The rules a (checked) exposure bundle fixes, on ``pool``.

    Parameters
    ----------
    bundle : dict
        An exposure bundle (see :mod:`qbank.exposure`); fields added after schema 1 was first
        written (``first_item``) read with their defaults when absent.
    pool : ItemPool, optional
        The pool the rules run on (default: the bundle's own items). ``K`` follows it by item id;
        a pool item the bundle does not hold gets ``K = 1``.
    item_ids : sequence of str, optional
        The bundle item id of each pool position, when the pool names its items otherwise (the
        service's pool is keyed by question id, the bundle by reference).

    Returns
    -------
    CatRules
    """
    if pool is None:
        from qbank.exposure._bundle import _pool_from_items

        pool = _pool_from_items(bundle)
    if item_ids is not None and len(item_ids) != pool.n_items:
        raise ValueError(f"item_ids has {len(item_ids)} entries for a pool of {pool.n_items} items")
    k = _k_in_pool_order(bundle, pool, item_ids)
    cuts = None
    if bundle["selector"] == "conditional_sympson_hetter":
        cuts = np.asarray(bundle["strata"]["theta_cuts"], dtype=float)
        selector = Selector("conditional_sympson_hetter", sh_p=k, theta_cuts=cuts)
    else:
        selector = Selector("sympson_hetter", sh_p=k)
    return CatRules(
        selector=selector,
        estimator=estimator_from_dict(bundle["estimator"]),
        stopping=stopping_from_dict(bundle["stopping"]),
        first_item=FirstItem.from_dict(bundle.get("first_item")),
        exposure_target=float(bundle["r_max"]),
        strata_cuts=cuts,
        origin={"bundle_sha256": bundle.get("bundle_sha256"), "pool_id": bundle["pool"]["id"]},
    )


def rules_from_settings(
    selector="max_info",
    *,
    estimator=None,
    stopping=None,
    first_item=None,
    sh_p=None,
    theta_cuts=None,
    k: int = 5,
    n_strata: int = 4,
    exposure_target: float | None = None,
) -> CatRules:
    """Rules from explicit settings (a quiz with no bundle, a study, ``qbank simulate``).

    Parameters
    ----------
    selector : str or Selector
        A rule of :data:`qbank.selection.RULES` (with ``sh_p``, ``theta_cuts``, ``k``, ``n_strata``)
        or a ready selector.
    estimator : EAP, MAP, MLE, str or dict, default EAP()
    stopping : FixedLength, StandardError or dict, default FixedLength(30)
    first_item : FirstItem or dict, default at the prior mean
    """
    if not isinstance(selector, Selector):
        selector = Selector(selector, k=k, n_strata=n_strata, sh_p=sh_p, theta_cuts=theta_cuts)
    if estimator is None:
        estimator = EAP()
    elif isinstance(estimator, str):
        estimator = make_estimator(estimator)
    elif isinstance(estimator, dict):
        estimator = estimator_from_dict(estimator)
    if stopping is None:
        stopping = FixedLength(30)
    elif isinstance(stopping, dict):
        stopping = stopping_from_dict(stopping)
    if not isinstance(first_item, FirstItem):
        first_item = FirstItem.from_dict(first_item)
    return CatRules(
        selector=selector,
        estimator=estimator,
        stopping=stopping,
        first_item=first_item,
        exposure_target=exposure_target,
        strata_cuts=selector.theta_cuts,
    )


# ---------------------------------------------------------------------------- one examinee
@dataclass
class TestRecord:
    """One examinee's test: per position the pool item, the answer, and the estimate and SE
    before and after it; ``withdrawn`` holds the items each step withdrew (exposure draws)."""

    items: list = field(default_factory=list)
    responses: list = field(default_factory=list)
    theta_before: list = field(default_factory=list)
    se_before: list = field(default_factory=list)
    theta_after: list = field(default_factory=list)
    se_after: list = field(default_factory=list)
    withdrawn: list = field(default_factory=list)
    finish_reason: str | None = None


def available_items(
    eligible: np.ndarray,
    served,
    withdrawn,
    *,
    topic_code=None,
    quota: dict | None = None,
    max_length: int | None = None,
) -> np.ndarray:
    """Items an examinee may still get: eligible, not served, not withdrawn and, with per-topic
    ``quota`` ({topic code: count}), within the quotas (:func:`qbank.selection.blueprint_mask`)."""
    mask = np.array(eligible, dtype=bool)
    mask[np.asarray(served, dtype=np.intp)] = False
    mask[np.asarray(withdrawn, dtype=np.intp)] = False
    if quota:
        n_topics = int(np.max(topic_code)) + 1 if len(topic_code) else 0
        n_topics = max(n_topics, max(quota) + 1)
        maximum = np.full(n_topics, max_length)
        minimum = np.zeros(n_topics, dtype=np.int64)
        for code, count in quota.items():
            maximum[code] = minimum[code] = count
        counts = np.bincount(np.asarray(topic_code)[np.asarray(served, dtype=np.intp)], minlength=n_topics)
        mask &= blueprint_mask(
            topic_code,
            counts[None, :],
            maximum=maximum,
            minimum=minimum,
            remaining=np.array([max_length - len(served)]),
        )[0]
    return mask


def run_test(
    rules: CatRules,
    pool: ItemPool,
    session_id: str,
    answer,
    *,
    eligible=None,
    topic_code=None,
    quota=None,
    capped=None,
) -> TestRecord:
    """One examinee's adaptive test under ``rules``, with the draws of ``session_id``.

    Parameters
    ----------
    answer : callable (position, pool position) -> int, bool or None
        The examinee's category score (``0 .. m-1``; a bool for a dichotomous item is 0/1);
        ``None`` stops the test there (a quiz left unfinished).
    eligible : ndarray of shape (n_items,), bool, optional
        Items the test may use (topic and difficulty filters).
    topic_code, quota : optional
        Per-topic quotas, see :func:`available_items`.
    capped : dict {position: [pool positions]}, optional
        Items a daily exposure cap withdrew at a step (the service records them), tried before
        the cap and then withdrawn like a rejected item.
    """
    eligible = np.ones(pool.n_items, dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    capped = capped or {}
    max_length = rules.stopping.max_length
    draws, steps = rules.session_draws(session_id, pool.n_items)
    theta0, se0 = rules.first_estimate(1)
    theta, se = float(theta0[0]), float(se0[0])
    record = TestRecord()
    withdrawn: list[int] = []
    while True:
        position = len(record.items)
        if position and rules.done(position, se):
            record.finish_reason = "se_target" if position < max_length else "length"
            break
        available = available_items(
            eligible, record.items, withdrawn, topic_code=topic_code, quota=quota, max_length=max_length
        )
        if position and not available.any():
            record.finish_reason = "pool_exhausted"
            break
        step_withdrawn: list[int] = []
        cap_here = list(capped.get(position, []))
        while True:
            selection = rules.select(pool, theta, available, position, draws, steps)
            step_withdrawn += selection.withdrawn_items.tolist()
            available[selection.withdrawn_items] = False
            index = int(selection.item[0])
            if index >= 0 and index in cap_here:
                cap_here.remove(index)
                step_withdrawn.append(index)
                available[index] = False
                continue
            break
        withdrawn += step_withdrawn
        record.withdrawn.append(step_withdrawn)
        if index < 0:
            record.finish_reason = "pool_exhausted"
            break
        response = answer(position, index)
        if response is None:
            record.items.append(index)
            record.theta_before.append(theta)
            record.se_before.append(se)
            break
        record.items.append(index)
        record.responses.append(int(response))
        record.theta_before.append(theta)
        record.se_before.append(se)
        theta, se = rules.estimate(pool, record.items, [float(r) for r in record.responses])
        record.theta_after.append(theta)
        record.se_after.append(se)
    return record


def audit_test(
    rules: CatRules,
    pool: ItemPool,
    session_id: str,
    items,
    responses,
    theta_after,
    se_after,
    *,
    eligible=None,
    topic_code=None,
    quota=None,
    capped=None,
) -> dict:
    """Replay a recorded test under ``rules`` and compare it position by position.

    Returns
    -------
    dict
        ``{"identical": True, "positions": n}``, or ``{"identical": False, "position": p,
        "reason": ...}`` naming the first position where the record departs from the replay.
    """
    items = [int(i) for i in items]

    def answer(position, index):
        if position >= len(items) or index != items[position] or position >= len(responses):
            return None
        return int(responses[position])

    replay = run_test(
        rules, pool, session_id, answer, eligible=eligible, topic_code=topic_code, quota=quota, capped=capped
    )
    ids = pool.item_id
    for position, recorded in enumerate(items):
        if position >= len(replay.items):
            return {
                "identical": False,
                "position": position,
                "reason": f"the replay ended ({replay.finish_reason}) before position {position}, "
                f"where item {ids[recorded]} was served",
            }
        if replay.items[position] != recorded:
            return {
                "identical": False,
                "position": position,
                "reason": f"served item {ids[recorded]}, the rules select item {ids[replay.items[position]]}",
            }
        if position < len(theta_after) and position < len(replay.theta_after):
            got = (replay.theta_after[position], replay.se_after[position])
            want = (float(theta_after[position]), float(se_after[position]))
            if got != want:
                return {
                    "identical": False,
                    "position": position,
                    "reason": f"theta, SE after the answer recorded as {want}, the rules give {got}",
                }
    return {"identical": True, "positions": len(items)}
