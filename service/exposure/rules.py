"""The CAT rules of a quiz: pinned when it starts, rebuilt from what it pinned at every step.

A quiz under an active exposure bundle pins that bundle (revision) and runs exactly the rules
:func:`qbank.rules_from_bundle` builds from it: selector and ``K`` (exposure-controlled
cohorts), estimator with its grid and prior, stopping rule and first-item rule. Cohorts of
other rules (the vanilla ``max_info``, randomesque, a-stratified) keep the bundle's estimator,
stopping and first-item rules with their own selector, so an A/B comparison differs in the
selector only. With no bundle in force the rules come from explicit settings
(:func:`qbank.rules_from_settings`): EAP, the request's stopping rule, and ``K = 1`` for a
Sympson-Hetter cohort. ``quiz_sessions.selector`` records the choice (rule, source, cohort,
``bundle_id`` and ``bundle_sha256``, ``estimator``, ``first_item``), ``quiz_sessions.stopping``
the stopping rule; ``K`` itself stays in the bundle (its one store).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from qbank.rules import CatRules, estimator_to_dict, rules_from_bundle, rules_from_settings
from qbank.selection import EXPOSURE_CONTROLLED
from service.errors import NotFound
from service.models import ExposureBundle, QuizSession
from service.pools import _LRU, PoolView

_RULES = _LRU(64)  # (bundle id, snapshot id) -> CatRules: both are immutable in what the rules read


def active_bundle(session: Session, tenant_id: str, exam_code: str) -> ExposureBundle | None:
    """The bundle in force for the exam, if any."""
    return session.scalar(
        select(ExposureBundle).where(
            ExposureBundle.tenant_id == tenant_id,
            ExposureBundle.exam_code == exam_code,
            ExposureBundle.status == "active",
        )
    )


def _bundle_rules(session: Session, bundle_id: str, view: PoolView, document: dict | None = None) -> CatRules:
    key = (bundle_id, view.snapshot_id)
    rules = _RULES.get(key)
    if rules is None:
        if document is None:
            bundle = session.get(ExposureBundle, bundle_id)
            if bundle is None:
                raise NotFound(f"exposure bundle {bundle_id} not found")
            document = bundle.document
        rules = rules_from_bundle(document, view.pool, item_ids=list(view.ref))
        _RULES.put(key, rules)
    return rules


def pin_rules(
    session: Session,
    tenant_id: str,
    exam_code: str,
    view: PoolView,
    choice: dict,
    requested_stopping,
    *,
    adaptive: bool,
    daily_cap: int | None = None,
) -> tuple[str | None, dict, dict, CatRules]:
    """What a new quiz pins: ``(bundle id, selector record, stopping record, rules)``.

    ``choice`` is the cohort's selection (:func:`service.exposure.choose_selector`, or
    ``{"rule": "linear"}``); ``requested_stopping`` is the request's rule, used only without a
    bundle (or for a linear quiz, whose length is the request's).
    """
    bundle = active_bundle(session, tenant_id, exam_code)
    config = dict(choice)
    rule = config["rule"]
    if bundle is not None:
        config["bundle_id"] = bundle.id
        config["bundle_sha256"] = bundle.sha256
        base = _bundle_rules(session, bundle.id, view, bundle.document)
        if rule in EXPOSURE_CONTROLLED:
            if rule != base.selector.rule:
                config["requested"] = rule
            config["rule"] = base.selector.rule
            rules = base
        else:
            stopping = base.stopping if adaptive else requested_stopping
            rules = rules_from_settings(
                "max_info" if rule == "linear" else rule,
                k=config.get("k", 5),
                n_strata=config.get("n_strata", 4),
                estimator=base.estimator,
                stopping=stopping,
                first_item=base.first_item,
            )
    else:
        if rule in EXPOSURE_CONTROLLED:
            config["rule"] = "sympson_hetter"
            config["fallback"] = f"{rule} without an active bundle for the exam: K = 1 for every item"
        rules = rules_from_settings(
            "max_info" if rule == "linear" else config["rule"],
            k=config.get("k", 5),
            n_strata=config.get("n_strata", 4),
            sh_p=np.ones(view.n_items) if config["rule"] == "sympson_hetter" else None,
            stopping=requested_stopping,
        )
    config["estimator"] = estimator_to_dict(rules.estimator)
    config["first_item"] = rules.first_item.to_dict()
    if daily_cap:
        config["daily_cap"] = int(daily_cap)
    return (None if bundle is None else bundle.id), config, rules.stopping.to_dict(), rules


def quiz_rules(session: Session, quiz: QuizSession, view: PoolView) -> CatRules:
    """The rules a quiz pinned (see :func:`pin_rules`), rebuilt: from its bundle for an
    exposure-controlled quiz under one, from its recorded settings otherwise."""
    config = quiz.selector
    rule = config["rule"]
    if rule in EXPOSURE_CONTROLLED and config.get("bundle_id"):
        return _bundle_rules(session, config["bundle_id"], view)
    return rules_from_settings(
        "max_info" if rule == "linear" else rule,
        k=config.get("k", 5),
        n_strata=config.get("n_strata", 4),
        sh_p=np.ones(view.n_items) if rule == "sympson_hetter" else None,
        estimator=config.get("estimator"),
        stopping=quiz.stopping,
        first_item=config.get("first_item"),
    )


def describe(quiz: QuizSession) -> dict:
    """What ``GET /v1/quizzes/{id}`` says about the rules: the pinned bundle revision (or none)
    and the rules without ``K``."""
    config = quiz.selector
    return {
        "bundle_id": config.get("bundle_id"),
        "bundle_sha256": config.get("bundle_sha256"),
        "k_from_bundle": bool(config.get("bundle_id")) and config["rule"] in EXPOSURE_CONTROLLED,
        "selector": {k: config[k] for k in ("rule", "k", "n_strata", "requested", "fallback") if k in config},
        "estimator": config.get("estimator", {"name": "eap"}),
        "stopping": quiz.stopping,
        "first_item": config.get("first_item", {"rule": "prior_mean"}),
    }
