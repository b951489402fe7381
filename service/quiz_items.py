"""Which items a quiz may be served: the request's filters, blueprint quotas and linear forms
over a pool view (arrays over the pool's items; the rules of :mod:`qbank.rules` do the rest)."""

from __future__ import annotations

import numpy as np

from qbank.rules import available_items
from service.errors import Invalid
from service.models import QuizSession
from service.pools import PoolView


def eligible_items(view: PoolView, filters: dict) -> np.ndarray:
    """Items passing the topic, difficulty-label and b-range filters, shape (n_items,)."""
    mask = np.ones(view.n_items, dtype=bool)
    if filters.get("topics"):
        mask &= np.isin(view.topic, np.array(filters["topics"], dtype=object))
    if filters.get("difficulty"):
        mask &= np.isin(view.difficulty_label, np.array(filters["difficulty"], dtype=object))
    if filters.get("b_min") is not None:
        mask &= view.pool.b >= filters["b_min"]
    if filters.get("b_max") is not None:
        mask &= view.pool.b <= filters["b_max"]
    return mask


def available_for_quiz(view: PoolView, quiz: QuizSession, served: list[int], max_length: int) -> np.ndarray:
    """Items the quiz may still get: eligible, not served, not withdrawn, within quotas."""
    return available_items(
        eligible_items(view, quiz.filters),
        served,
        quiz.withdrawn,
        topic_code=view.topic_code,
        quota=quota_codes(view, quiz.blueprint),
        max_length=max_length,
    )


def quota_codes(view: PoolView, blueprint: dict | None) -> dict | None:
    """A quiz's blueprint quotas by topic code (what :func:`qbank.rules.available_items` takes)."""
    if not blueprint:
        return None
    return {view.topic_names.index(name): count for name, count in blueprint["quota"].items()}


def resolve_quota(view: PoolView, eligible: np.ndarray, quota: dict | None, max_length: int) -> dict | None:
    """Quota keys (topic names or topic ids) as topic names, checked against the pool."""
    if not quota:
        return None
    by_id = {str(tid): name for tid, name in zip(view.topic_id, view.topic) if tid is not None}
    resolved, unknown = {}, []
    for key, count in quota.items():
        name = key if key in view.topic_names else by_id.get(str(key))
        if name is None:
            unknown.append(key)
        else:
            resolved[name] = resolved.get(name, 0) + int(count)
    if unknown:
        raise Invalid(f"blueprint_quota: unknown topic(s) {sorted(unknown)}; the exam has {view.topic_names}")
    short = {
        name: int((eligible & (view.topic == name)).sum())
        for name, n in resolved.items()
        if n > int((eligible & (view.topic == name)).sum())
    }
    if short:
        raise Invalid(f"blueprint_quota: not enough eligible items for {sorted(short)} (available: {short})")
    if sum(resolved.values()) > max_length:
        raise Invalid(
            f"blueprint_quota: quotas add up to {sum(resolved.values())}, more than the "
            f"{max_length} questions of the quiz"
        )
    return {"quota": resolved}


def linear_plan(
    view: PoolView, eligible: np.ndarray, blueprint: dict | None, max_length: int, rng: np.random.Generator
) -> list[int]:
    """A fixed form: the quota items of each topic, filled at random from the rest, shuffled."""
    chosen: list[int] = []
    open_items = eligible.copy()
    for name, count in sorted((blueprint or {}).get("quota", {}).items()):
        members = np.flatnonzero(eligible & (view.topic == name))
        chosen.extend(rng.choice(members, size=count, replace=False).tolist())
        open_items &= view.topic != name
    rest = np.flatnonzero(open_items)
    n_fill = min(max_length - len(chosen), rest.size)
    chosen.extend(rng.choice(rest, size=n_fill, replace=False).tolist())
    return [int(i) for i in rng.permutation(np.array(chosen, dtype=np.intp))]
