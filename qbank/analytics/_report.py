"""The analytics report: DuckDB analyses of a snapshot as CSV tables, PNG plots and report.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from qbank._tables import markdown_table
from qbank.plots import new_figure, save_figure

from ._analyses import ANALYSES, compare_with_views, run_analyses
from ._snapshot import open_snapshot, read_manifest

__all__ = ["AnalyticsReport", "write_report"]

MAX_HEATMAP_USERS = 40


@dataclass
class AnalyticsReport:
    """What :func:`write_report` produced: the analysis frames, the files and the view check."""

    results: dict[str, pd.DataFrame]
    files: dict[str, Path] = field(default_factory=dict)
    view_check: dict[str, str] = field(default_factory=dict)


def _empty_plot(path: Path, title: str, message: str) -> Path:
    fig, ax = new_figure(figsize=(6, 2.5))
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center")
    ax.set_axis_off()
    return save_figure(fig, path)


def _scoped(frame: pd.DataFrame, column: str) -> pd.Series:
    """``column`` prefixed with the tenant when the frame holds more than one tenant."""
    if frame["tenant_id"].nunique() <= 1:
        return frame[column].astype(str)
    return frame["tenant_id"] + "/" + frame[column].astype(str)


def mastery_heatmap(mastery: pd.DataFrame, path: Path) -> Path:
    """Credit over all days (points over maximum points: partial credit counts on items scored
    ``0 .. m-1``, and it is accuracy on 0/1 items) per user (rows, most attempts first) and
    topic (columns)."""
    title = "Topic mastery: credit per user and topic"
    if mastery.empty:
        return _empty_plot(path, title, "no answers in this snapshot")
    frame = mastery.assign(topic=mastery["topic_name"].fillna("(no topic)"), user=_scoped(mastery, "user_id"))
    totals = frame.groupby(["user", "topic"])[["points", "max_points"]].sum()
    credit = (totals["points"] / totals["max_points"]).unstack("topic")
    busiest = frame.groupby("user")["attempts"].sum().sort_values(ascending=False, kind="stable")
    credit = credit.loc[busiest.index[:MAX_HEATMAP_USERS]]
    fig, ax = new_figure(figsize=(max(6.0, 2.5 + 0.9 * credit.shape[1]), 2.0 + 0.32 * credit.shape[0]))
    image = ax.imshow(credit.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(credit.shape[1]), credit.columns, rotation=45, ha="right")
    ax.set_yticks(range(credit.shape[0]), credit.index)
    shown = "" if len(busiest) <= MAX_HEATMAP_USERS else f" ({MAX_HEATMAP_USERS} of {len(busiest)} users)"
    ax.set_title(title + shown)
    fig.colorbar(image, ax=ax, label="credit (share of the points; accuracy on 0/1 items)")
    return save_figure(fig, path)


def coverage_bars(coverage: pd.DataFrame, path: Path) -> Path:
    """Live items per exam, topic and difficulty as bars, the blueprint target as a black tick."""
    title = "Blueprint coverage: live items vs target"
    if coverage.empty:
        return _empty_plot(path, title, "no published items or targets in this snapshot")
    frame = coverage.sort_values(["exam_code", "topic_name", "difficulty_label"], na_position="first")
    labels = (
        _scoped(frame, "exam_code")
        + " · "
        + frame["topic_name"].fillna("(no topic)")
        + " · "
        + frame["difficulty_label"]
    ).tolist()
    colours = frame["status"].map({"short": "#d62728", "met": "#2ca02c", "untargeted": "#7f7f7f"}).tolist()
    y = np.arange(len(frame))
    fig, ax = new_figure(figsize=(8, 1.2 + 0.3 * len(frame)))
    ax.barh(y, frame["published_items"], color=colours)
    targeted = frame["target_items"].notna().to_numpy()
    ax.scatter(
        frame["target_items"].to_numpy(dtype=float)[targeted],
        y[targeted],
        marker="|",
        s=300,
        color="black",
        label="target",
    )
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("live items (red: short of target, green: met, grey: no target)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def exposure_over_time(exposure: pd.DataFrame, path: Path) -> Path:
    """Largest and mean daily exposure rate per exam over the days in the snapshot."""
    title = "Item exposure per day"
    if exposure.empty:
        return _empty_plot(path, title, "no items served in this snapshot")
    frame = exposure.assign(exam=_scoped(exposure, "exam_code"))
    daily = frame.groupby(["exam", "day"])["exposure_rate"].agg(["max", "mean"]).reset_index()
    fig, ax = new_figure(figsize=(8, 4))
    for exam, rows in daily.groupby("exam"):
        days = pd.to_datetime(rows["day"])
        (line,) = ax.plot(days, rows["max"], marker="o", label=f"{exam}: largest item")
        ax.plot(days, rows["mean"], ls="--", color=line.get_color(), label=f"{exam}: mean of served items")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("exposure rate (share of the day's quizzes)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    n_days = (pd.to_datetime(daily["day"]).max() - pd.to_datetime(daily["day"]).min()).days + 1
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, n_days // 10)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    fig.autofmt_xdate()
    return save_figure(fig, path)


def _markdown(frame: pd.DataFrame, max_rows: int = 30) -> str:
    lines = [markdown_table(frame.head(max_rows))]
    if len(frame) > max_rows:
        lines.append(f"\n({len(frame) - max_rows} more rows in the CSV)")
    return "\n".join(lines)


def _read_views(folder: Path) -> dict[str, pd.DataFrame]:
    views = {}
    for name in ANALYSES:
        path = folder / "views" / f"{name}.parquet"
        if path.is_file():
            views[name] = pq.read_table(path).to_pandas()
    return views


def write_report(
    snapshot, out, *, tenant_id: str | None = None, exam_code: str | None = None
) -> AnalyticsReport:
    """Run the analyses on a snapshot folder and write the report folder ``out``.

    Files: ``<analysis>.csv`` for the four analyses, ``mastery_heatmap.png``,
    ``coverage.png``, ``exposure_over_time.png`` and ``report.md`` (tables, plots, and whether
    the DuckDB results match the database views exported with the snapshot).

    Parameters
    ----------
    snapshot : path-like
        A folder written by ``qbank analytics export``.
    tenant_id, exam_code : str, optional
        Keep only this tenant's / exam's rows (the view check is skipped when filtering).

    Raises
    ------
    qbank.analytics.SnapshotError
        When the snapshot is incomplete; ValueError when a filter matches no row.
    """
    snapshot, out = Path(snapshot), Path(out)
    manifest = read_manifest(snapshot)
    con = open_snapshot(snapshot)
    try:
        results = run_analyses(con)
    finally:
        con.close()
    view_check = {}
    if tenant_id is None and exam_code is None:
        view_check = compare_with_views(results, _read_views(snapshot))
    for column, value in (("tenant_id", tenant_id), ("exam_code", exam_code)):
        if value is None:
            continue
        present = set().union(*(set(frame[column]) for frame in results.values()))
        if value not in present:
            raise ValueError(
                f"--{column.split('_')[0]}: {value!r} is not in the snapshot (present: {sorted(present)})"
            )
        results = {
            name: frame[frame[column] == value].reset_index(drop=True) for name, frame in results.items()
        }
    out.mkdir(parents=True, exist_ok=True)
    report = AnalyticsReport(results=results, view_check=view_check)
    for name, frame in results.items():
        report.files[name] = out / f"{name}.csv"
        frame.to_csv(report.files[name], index=False)
    report.files["mastery_heatmap"] = mastery_heatmap(results["topic_mastery"], out / "mastery_heatmap.png")
    report.files["coverage"] = coverage_bars(results["blueprint_coverage"], out / "coverage.png")
    report.files["exposure_over_time"] = exposure_over_time(
        results["item_exposure_daily"], out / "exposure_over_time.png"
    )
    report.files["report"] = out / "report.md"
    report.files["report"].write_text(
        _report_markdown(report, manifest, tenant_id, exam_code), encoding="utf-8"
    )
    return report


def _report_markdown(report: AnalyticsReport, manifest: dict, tenant_id, exam_code) -> str:
    results = report.results
    tenants = set().union(*(set(frame["tenant_id"]) for frame in results.values()))
    scope = ["tenant_id"] if len(tenants) > 1 else []

    def table(name: str, columns: list[str], **kwargs) -> str:
        frame = results[name]
        if name == "item_exposure_daily":
            frame = frame.sort_values("exposure_rate", ascending=False, kind="stable")
        return _markdown(frame[scope + columns], **kwargs)

    coverage = results["blueprint_coverage"]
    short = coverage[coverage["status"] == "short"]
    lines = [
        "# qbank analytics report",
        "",
        f"Snapshot of `{manifest.get('database')}` (revision {manifest.get('alembic_revision')}) taken "
        f"{manifest.get('created_at')}"
        + (f"; tenant {tenant_id}" if tenant_id else "")
        + (f"; exam {exam_code}" if exam_code else "")
        + ". Days are UTC.",
        "",
        "## Topic mastery",
        "",
        "Accuracy is the share of answers with full credit; credit the share of the points "
        "(partial credit on items scored in ordered categories; the same as accuracy on 0/1 items).",
        "",
        "![mastery](mastery_heatmap.png)",
        "",
        table(
            "topic_mastery",
            [
                "exam_code",
                "user_id",
                "topic_name",
                "day",
                "attempts",
                "accuracy",
                "credit",
                "mean_time_ms",
                "latest_theta",
                "cumulative_credit",
            ],
        ),
        "",
        "## Blueprint coverage",
        "",
        "![coverage](coverage.png)",
        "",
        f"{len(short)} cells short of target, {int(short['gap_items'].sum())} items missing.",
        "",
        table(
            "blueprint_coverage",
            [
                "exam_code",
                "topic_name",
                "difficulty_label",
                "published_items",
                "target_items",
                "gap_items",
                "status",
            ],
        ),
        "",
        "## Exposure over time",
        "",
        "![exposure](exposure_over_time.png)",
        "",
        table(
            "item_exposure_daily",
            [
                "exam_code",
                "day",
                "question_id",
                "external_ref",
                "administrations",
                "sessions",
                "exposure_rate",
            ],
            max_rows=15,
        ),
        "",
        "## Selector A/B outcomes",
        "",
        table("selector_outcomes", [c for c in results["selector_outcomes"].columns if c != "tenant_id"]),
        "",
    ]
    if report.view_check:
        lines += [
            "## Check against the database views",
            "",
            *(f"- {name}: {verdict}" for name, verdict in report.view_check.items()),
            "",
        ]
    return "\n".join(lines)
