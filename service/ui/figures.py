"""PNG figures of the admin pages, drawn server-side from what the service functions return.

Each function returns PNG bytes; the figures come from :mod:`qbank.plots` (no pyplot, so no
global backend state in the service process).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from qbank import plots


def _png(fig, margins: dict | None = None) -> bytes:
    """PNG bytes; fixed ``margins`` (``fig.subplots_adjust`` keywords) skip tight_layout, which
    costs as much as drawing the figure."""
    buffer = io.BytesIO()
    if margins:
        fig.subplots_adjust(**margins)
    else:
        fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _via_file(draw, *args, **kwargs) -> bytes:
    """Bytes of a :mod:`qbank.plots` helper that writes to a path."""
    with tempfile.TemporaryDirectory(prefix="qbank-ui-plot-") as folder:
        path = Path(folder) / "figure.png"
        draw(*args, path, **kwargs)
        return path.read_bytes()


def bundle_trace(document: dict) -> pd.DataFrame:
    """The bundle's simulation trace as :func:`qbank.plots.convergence_trace` takes it: one row
    per (iteration, stratum) with ``max_exposure`` and ``tolerance``."""
    rows = [
        {
            "iteration": step["iteration"],
            "stratum": j,
            "max_exposure": value,
            "tolerance": step["tolerance"][j] if j < len(step.get("tolerance", [])) else np.nan,
        }
        for step in document["simulation"]["trace"]
        for j, value in enumerate(step["max_exposure"])
    ]
    return pd.DataFrame(rows, columns=["iteration", "stratum", "max_exposure", "tolerance"])


def convergence_png(document: dict) -> bytes:
    """Largest exposure rate per Sympson-Hetter iteration against ``r_max`` (one line per stratum)."""
    cuts = (document.get("strata") or {}).get("theta_cuts")
    labels = None
    if cuts:
        bounds = [-np.inf, *cuts, np.inf]
        labels = [f"θ in [{bounds[j]:g}, {bounds[j + 1]:g})" for j in range(len(bounds) - 1)]
    return _via_file(
        plots.convergence_trace, bundle_trace(document), r_max=float(document["r_max"]), labels=labels
    )


def k_distribution_png(document: dict) -> bytes:
    """Histogram of the bundle's K (``sh_p``) over its items."""
    return _via_file(plots.k_distribution, {"bundle K": [item["sh_p"] for item in document["items"]]})


def exposure_summary_png(document: dict) -> bytes:
    """Largest exposure rate and test overlap without and with exposure control (the bundle's
    validation figures) against ``r_max``."""
    validation = document["validation"]
    uncontrolled = validation.get("uncontrolled") or {}
    fig, ax = plots.new_figure(figsize=(7, 3.6))
    names = ["max exposure", "test overlap"]
    keys = ["max_exposure", "overlap_rate"]
    x = np.arange(len(names))
    if uncontrolled:
        ax.bar(x - 0.2, [uncontrolled[k] for k in keys], width=0.4, label="without control", color="#9aa5b1")
    ax.bar(
        x + (0.2 if uncontrolled else 0.0),
        [validation[k] for k in keys],
        width=0.4,
        label="with the bundle",
        color="#1f6feb",
    )
    ax.axhline(
        float(document["r_max"]), color="crimson", ls="--", lw=1, label=f"r_max = {document['r_max']:g}"
    )
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("rate")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def drift_png(report: dict) -> bytes:
    """Observed against predicted exposure rate per item, with the line y = x and r_max; drifting
    items in red."""
    items = report["items"]
    predicted = np.array([row["predicted_rate"] for row in items], dtype=float)
    observed = np.array([np.nan if row["observed_rate"] is None else row["observed_rate"] for row in items])
    flagged = np.array([row["drift"] or row["over_r_max"] for row in items], dtype=bool)
    fig, ax = plots.new_figure(figsize=(6, 5.5))
    top = float(np.nanmax(np.concatenate([predicted, observed, [report["r_max"]]]))) * 1.1 or 1.0
    ax.plot([0, top], [0, top], color="black", lw=1, label="y = x")
    ax.axhline(report["r_max"], color="crimson", ls="--", lw=1, label=f"r_max = {report['r_max']:g}")
    ax.scatter(predicted[~flagged], observed[~flagged], s=12, alpha=0.6, label="items")
    if flagged.any():
        ax.scatter(predicted[flagged], observed[flagged], s=24, color="crimson", label="flagged (drift)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted exposure rate (bundle simulation)")
    ax.set_ylabel(f"observed exposure rate ({report['window_days']} d, {report['quizzes']} quizzes)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig, margins={"left": 0.13, "right": 0.97, "bottom": 0.1, "top": 0.97})
