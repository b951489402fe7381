"""The LookML project in analytics/looker: every file parses with ``lkml``; explores, joins,
access filters and field references resolve to defined views and fields; every view reads a
table or view of the migrated database; and its fields, compiled to SQL the way Looker does
for these types, run on both databases and give the hand-computed numbers."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import lkml
import pytest
from analytics_dataset import TENANT_A
from sqlalchemy import text

from service.db import make_engine

PROJECT = Path(__file__).resolve().parents[2] / "analytics" / "looker"
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\}")
AGGREGATES = {
    "sum": "SUM({})",
    "average": "AVG({})",
    "max": "MAX({})",
    "min": "MIN({})",
    "count_distinct": "COUNT(DISTINCT {})",
}


def _load(path: Path) -> dict:
    return lkml.load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def project():
    files = sorted(PROJECT.rglob("*.lkml"))
    models = [f for f in files if f.name.endswith(".model.lkml")]
    assert len(models) == 1, models
    model = _load(models[0])
    views = {}
    for path in files:
        if path.name.endswith(".view.lkml"):
            for view in _load(path).get("views", []):
                assert view["name"] not in views, f"view {view['name']} defined twice"
                views[view["name"]] = {"view": view, "path": path}
    return model, models[0], views, files


def _fields(view: dict) -> dict[str, dict]:
    """Field name -> definition; a dimension group gives one field per timeframe."""
    fields = {d["name"]: d for d in view.get("dimensions", []) + view.get("measures", [])}
    for group in view.get("dimension_groups", []):
        for timeframe in group.get("timeframes", []):
            fields[f"{group['name']}_{timeframe}"] = group
    return fields


def test_every_file_is_included_and_parses(project):
    model, _model_path, views, files = project
    assert model["connection"]
    included = {
        f
        for pattern in model["includes"]
        for f in files
        if fnmatch.fnmatch("/" + f.relative_to(PROJECT).as_posix(), pattern)
    }
    assert included == {v["path"] for v in views.values()}
    assert set(views) == {
        "topics",
        "topic_mastery",
        "blueprint_coverage",
        "item_exposure_daily",
        "selector_outcomes",
    }


def test_explores_joins_and_references_resolve(project):
    model, _, views, _ = project
    assert {e["name"] for e in model["explores"]} == {
        "topic_mastery",
        "blueprint_coverage",
        "item_exposure_daily",
        "selector_outcomes",
    }
    for explore in model["explores"]:
        base = explore.get("from", explore.get("view_name", explore["name"]))
        assert base in views, f"explore {explore['name']}: no view {base}"
        scope = {explore["name"]: base}
        for join in explore.get("joins", []):
            target = join.get("from", join["name"])
            assert target in views, f"explore {explore['name']}: join {join['name']} names no view"
            assert join["relationship"] in {"many_to_one", "one_to_one", "one_to_many", "many_to_many"}
            scope[join["name"]] = target
        texts = [j.get("sql_on", "") for j in explore.get("joins", [])] + [
            explore.get("sql_always_where", "")
        ]
        references = [m.groups() for t in texts for m in REFERENCE.finditer(t)]
        references += [tuple(a["field"].split(".")) for a in explore.get("access_filters", [])]
        references += [tuple(f.split(".")) for f in explore.get("fields", []) if not f.endswith("*")]
        assert references or not explore.get("joins")
        for view_name, field in references:
            assert view_name in scope, f"explore {explore['name']}: {view_name} is not in the explore"
            assert field in _fields(views[scope[view_name]]["view"]), (
                f"explore {explore['name']}: {view_name}.{field} is not a field of {scope[view_name]}"
            )
        assert explore.get("access_filters"), f"explore {explore['name']} is not filtered by tenant"


def test_views_have_one_primary_key_and_resolvable_fields(project):
    _, _, views, _ = project
    for name, entry in views.items():
        view = entry["view"]
        fields = _fields(view)
        keys = [d["name"] for d in view.get("dimensions", []) if d.get("primary_key") == "yes"]
        assert len(keys) == 1, f"view {name}: primary keys {keys}"
        for field_name, field in fields.items():
            for scope, ref in REFERENCE.findall(field.get("sql", "")):
                if not ref:
                    assert scope == "TABLE" or scope in fields, f"{name}.{field_name}: unknown ${{{scope}}}"
                else:
                    assert scope in views and ref in _fields(views[scope]["view"]), (
                        f"{name}.{field_name}: {scope}.{ref}"
                    )
            for condition in field.get("filters__all", []):
                for clause in condition:
                    assert set(clause) <= set(fields), (
                        f"{name}.{field_name}: filter on unknown field {clause}"
                    )


def _compile(view: dict, name: str, fields: dict) -> str:
    """The SQL of a field with ${TABLE} as ``t`` and field references inlined (aggregated for
    measures, as Looker does)."""
    field = fields[name]
    kind = field.get("type", "string")
    sql = field.get("sql", "")
    inlined = REFERENCE.sub(
        lambda m: "t" if m.group(1) == "TABLE" else f"({_compile(view, m.group(1), fields)})", sql
    )
    if name not in {m["name"] for m in view.get("measures", [])}:
        return inlined
    if kind == "count":
        conditions = [
            f"t.{column} = '{value}'"
            for clause in field.get("filters__all", [[]])[0]
            for column, value in clause.items()
        ]
        return f"COUNT(CASE WHEN {' AND '.join(conditions) or '1 = 1'} THEN 1 END)"
    return AGGREGATES[kind].format(inlined) if kind in AGGREGATES else inlined


def _measures(analytics_db, views, view_name: str, tenant: str = TENANT_A) -> dict:
    view = views[view_name]["view"]
    fields = _fields(view)
    names = [m["name"] for m in view.get("measures", [])]
    query = (
        f"SELECT {', '.join(f'{_compile(view, n, fields)} AS {n}' for n in names)} "
        f"FROM {view['sql_table_name']} t WHERE t.tenant_id = :tenant"
    )
    engine = make_engine(analytics_db, pool_size=1)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text(query), {"tenant": tenant}).mappings().one())
    finally:
        engine.dispose()


def test_every_dimension_runs_on_the_database(project, analytics_db):
    """Each view's table exists and each dimension's SQL (and dimension group column) runs."""
    _, _, views, _ = project
    engine = make_engine(analytics_db, pool_size=1)
    try:
        with engine.connect() as conn:
            for entry in views.values():
                view = entry["view"]
                fields = _fields(view)
                for dimension in view.get("dimensions", []) + view.get("dimension_groups", []):
                    sql = (
                        _compile(view, dimension["name"], fields)
                        if dimension in view.get("dimensions", [])
                        else REFERENCE.sub("t", dimension["sql"])
                    )
                    conn.execute(text(f"SELECT {sql} FROM {view['sql_table_name']} t"))
    finally:
        engine.dispose()


def test_measures_give_the_hand_computed_numbers(project, analytics_db):
    _, _, views, _ = project
    mastery = _measures(analytics_db, views, "topic_mastery")
    # 5 of 7 answers right; 14 s over the 6 answers with a time (a ratio of sums, not a mean of means)
    assert (mastery["attempts"], mastery["correct"], mastery["users"]) == (7, 5, 2)
    assert float(mastery["accuracy"]) == pytest.approx(5 / 7)
    assert float(mastery["mean_time_seconds"]) == pytest.approx(14000 / 6 / 1000)
    # 0/1 items: the points are the right answers, the credit the accuracy
    assert (mastery["points"], mastery["max_points"]) == (5, 7)
    assert float(mastery["credit"]) == pytest.approx(5 / 7)
    coverage = _measures(analytics_db, views, "blueprint_coverage")
    # targeted cells hold 1 + 1 + 1 + 0 live items against 2 + 1 + 3 + 2 wanted
    assert (coverage["published_items"], coverage["target_items"], coverage["gap_items"]) == (6, 8, 5)
    assert float(coverage["coverage_ratio"]) == pytest.approx(3 / 8)
    assert coverage["cells_short"] == 3
    exposure = _measures(analytics_db, views, "item_exposure_daily")
    assert (exposure["administrations"], exposure["items_served"]) == (8, 4)
    assert float(exposure["max_exposure_rate"]) == 1.0
    assert float(exposure["mean_exposure_rate"]) == pytest.approx(4 / 6)
    assert _measures(analytics_db, views, "selector_outcomes")["quizzes"] == 5
    # partial credit: one answer of three with full credit, 3 of 6 points
    partial = _measures(analytics_db, views, "topic_mastery", tenant="tenant-p")
    assert (partial["attempts"], partial["correct"], partial["points"], partial["max_points"]) == (3, 1, 3, 6)
    assert (float(partial["accuracy"]), float(partial["credit"])) == (pytest.approx(1 / 3), 0.5)
