"""Matplotlib figures for reports (Agg backend; PNG or SVG by file extension)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["exposure_sorted", "conditional_accuracy"]


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def exposure_sorted(rates: dict, path, target: float | None = None) -> Path:
    """Exposure rates sorted from highest to lowest, one line per labelled run."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, rate in rates.items():
        ax.plot(np.sort(np.asarray(rate))[::-1], label=label, lw=1.5)
    if target is not None:
        ax.axhline(target, color="crimson", ls="--", lw=1, label=f"target r = {target:g}")
    ax.set_xlabel("items, sorted by exposure rate")
    ax.set_ylabel("exposure rate")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def conditional_accuracy(frames: dict, path) -> Path:
    """Conditional bias and RMSE against true theta, one line per labelled run."""
    fig, (ax_bias, ax_rmse) = plt.subplots(1, 2, figsize=(10, 4))
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
    return _save(fig, path)
