"""Matplotlib figures for reports, built without pyplot (PNG or SVG by file extension)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "conditional_accuracy",
    "convergence_trace",
    "exposure_by_stratum",
    "exposure_sorted",
    "k_distribution",
    "new_figure",
    "save_figure",
]


def new_figure(*args, **kwargs):
    """``(figure, axes)`` like ``pyplot.subplots``; show it in a notebook by evaluating ``figure``."""
    # Figures built without pyplot: no global backend switch and no figure registry, so
    # importing qbank.plots leaves a notebook's inline plotting alone and leaks nothing.
    fig = Figure(figsize=kwargs.pop("figsize", None))
    return fig, fig.subplots(*args, **kwargs)


def save_figure(fig, path) -> Path:
    """Write ``fig`` as PNG or SVG (by extension), creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def exposure_sorted(rates: dict, path, target: float | None = None) -> Path:
    """Exposure rates sorted from highest to lowest, one line per labelled run."""
    fig, ax = new_figure(figsize=(7, 4))
    for label, rate in rates.items():
        ax.plot(np.sort(np.asarray(rate))[::-1], label=label, lw=1.5)
    if target is not None:
        ax.axhline(target, color="crimson", ls="--", lw=1, label=f"target r = {target:g}")
    ax.set_xlabel("items, sorted by exposure rate")
    ax.set_ylabel("exposure rate")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def conditional_accuracy(frames: dict, path) -> Path:
    """Conditional bias and RMSE against true theta, one line per labelled run."""
    fig, (ax_bias, ax_rmse) = new_figure(1, 2, figsize=(10, 4))
    for label, frame in frames.items():
        low = frame["theta_low"].replace(-np.inf, np.nan)
        high = frame["theta_high"].replace(np.inf, np.nan)
        middle = ((low.fillna(high - 0.5)) + (high.fillna(low + 0.5))) / 2
        ax_bias.plot(middle, frame["bias"], marker="o", label=label)
        ax_rmse.plot(middle, frame["rmse"], marker="o", label=label)
    ax_bias.axhline(0, color="grey", lw=0.8)
    ax_bias.set(xlabel="true theta", ylabel="bias", title="Conditional bias")
    ax_rmse.set(xlabel="true theta", ylabel="RMSE", title="Conditional RMSE")
    for ax in (ax_bias, ax_rmse):
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def convergence_trace(trace, path, r_max: float, labels=None) -> Path:
    """Largest exposure rate per iteration with the target ``r`` and the Monte-Carlo noise band
    ``[r, r + tol]``, one line per controlled stratum.

    ``trace`` is :attr:`qbank.exposure.ExposureCalibration.trace` (columns ``iteration``,
    ``stratum``, ``max_exposure``, ``tolerance``).
    """
    fig, (ax_all, ax_zoom) = new_figure(1, 2, figsize=(11, 4))
    strata = sorted(trace["stratum"].unique())
    for ax in (ax_all, ax_zoom):
        for j in strata:
            rows = trace[trace["stratum"] == j].sort_values("iteration")
            label = (
                labels[j] if labels is not None else ("max exposure" if len(strata) == 1 else f"stratum {j}")
            )
            (line,) = ax.plot(rows["iteration"], rows["max_exposure"], marker="o", ms=3, label=label)
            band = np.minimum(r_max + rows["tolerance"].to_numpy(), 1.0)
            ax.fill_between(
                rows["iteration"],
                r_max,
                band,
                color=line.get_color(),
                alpha=0.15,
                lw=0,
                label="noise band [r, r + tol]" if j == strata[0] else None,
            )
        ax.axhline(r_max, color="crimson", ls="--", lw=1, label=f"r = {r_max:g}")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    ax_all.set_ylabel("max exposure rate P(A)")
    ax_all.set_ylim(0, 1.05)
    tol = float(trace["tolerance"].replace(np.inf, np.nan).max())
    tol = tol if np.isfinite(tol) and tol > 0 else 0.05 * r_max
    ax_zoom.set_ylim(max(0.0, r_max - 2 * tol), r_max + 4 * tol)
    ax_zoom.set_title("near r", fontsize=9)
    ax_zoom.legend(fontsize=8)
    return save_figure(fig, path)


def k_distribution(sh_p: dict, path) -> Path:
    """Histogram of exposure-control parameters ``K`` (``sh_p``), one per labelled set."""
    fig, ax = new_figure(figsize=(7, 4))
    bins = np.linspace(0.0, 1.0, 21)
    for label, values in sh_p.items():
        ax.hist(np.asarray(values).ravel(), bins=bins, histtype="step", lw=1.5, label=label)
    ax.set_xlabel("K = sh_p")
    ax.set_ylabel("items")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def exposure_by_stratum(rates: dict, strata: list, path, target: float | None = None, limits=None) -> Path:
    """Exposure rates sorted from highest to lowest within each true-theta stratum (one panel per
    stratum), one line per labelled run; ``rates[label]`` has shape (n_items, n_strata)."""
    n = len(strata)
    fig, axes = new_figure(1, n, figsize=(3.2 * n, 3.6), sharey=True, squeeze=False)
    for j, ax in enumerate(axes[0]):
        for label, rate in rates.items():
            ax.plot(np.sort(np.nan_to_num(np.asarray(rate)[:, j]))[::-1], lw=1.3, label=label)
        if target is not None:
            ax.axhline(target, color="crimson", ls="--", lw=1, label=f"r = {target:g}")
        if limits is not None:
            ax.axhline(limits[j], color="grey", ls=":", lw=1, label="r + tol")
        ax.set_title(strata[j], fontsize=9)
        ax.set_xlabel("items, sorted")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("P(A | stratum)")
    axes[0][0].set_ylim(bottom=0)
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, path)
