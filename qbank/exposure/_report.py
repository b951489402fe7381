"""The report folder of an exposure calibration: CSV tables, PNG plots and report.md."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qbank._tables import markdown_table

from ._calibrate import ExposureCalibration
from ._updates import stratum_labels
from ._validate import ExposureValidation

__all__ = ["OVER_LIMIT_NOTE", "write_report"]

OVER_LIMIT_NOTE = (
    "Over r_max = the observed rate exceeds the target r, which Monte-Carlo noise alone does for "
    "about half the items whose true rate is r; over the limit = it exceeds r + 3 SE of the "
    "validation (SE = sqrt(r(1-r)/N)), which noise alone does with probability 0.00135 per item, "
    "so the validation fails."
)


def _trace_table(calibration: ExposureCalibration) -> pd.DataFrame:
    trace = calibration.trace
    if not calibration.conditional:
        table = trace.set_index("iteration")[
            [
                "max_exposure",
                "target",
                "tolerance",
                "k_shift",
                "n_capped",
                "within_tolerance",
                "k_stable",
                "rmse",
                "wall_seconds",
            ]
        ]
        table.columns = [
            "max P(A)",
            "target r'",
            "tol",
            "K shift",
            "capped",
            "within",
            "stable",
            "RMSE",
            "seconds",
        ]
        return table
    wide = trace.pivot(index="iteration", columns="stratum", values=["max_exposure", "target", "tolerance"])
    table = pd.DataFrame(index=wide.index)
    for j in sorted(trace["stratum"].unique()):
        table[f"max P(A|{j}) / r' + tol"] = [
            f"{m:.4f} / {g + t:.4f}"
            for m, g, t in zip(wide[("max_exposure", j)], wide[("target", j)], wide[("tolerance", j)])
        ]
    per_iteration = trace.groupby("iteration").agg(
        shift=("k_shift", "max"),
        within=("within_tolerance", "all"),
        stable=("k_stable", "all"),
        rmse=("rmse", "first"),
        seconds=("wall_seconds", "first"),
    )
    return table.join(per_iteration.rename(columns={"shift": "max K shift"}))


def write_report(
    out,
    calibration: ExposureCalibration,
    validation: ExposureValidation | None = None,
    *,
    bundle_path=None,
    comparison: pd.DataFrame | None = None,
) -> dict:
    """Write the report of a calibration (and its validation) to ``out``.

    Files: ``report.md``, ``trace.csv``, ``k.csv`` (``item_id, sh_p``: a ``qbank simulate
    --k-file`` when unconditional), ``convergence.png``, ``k_distribution.png`` and, with a
    validation, ``validation.csv``, ``strata.csv``, ``exposure.csv``, ``conditional.csv``,
    ``exposure_sorted.png`` (before = without control, after = with), ``exposure_by_stratum.png``,
    ``conditional.png``; ``comparison.csv`` when ``comparison`` is given.

    Returns
    -------
    dict
        name -> Path of every file written.
    """
    from qbank import plots  # matplotlib only when a report is written

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pool, r_max = calibration.pool, calibration.r_max
    paths = {"trace": out / "trace.csv", "k": out / "k.csv"}
    calibration.trace.to_csv(paths["trace"], index=False)
    calibration.sh_p_frame().to_csv(paths["k"], index=False)
    controlled_labels = stratum_labels(calibration.strata_cuts) if calibration.conditional else None
    paths["convergence_plot"] = plots.convergence_trace(
        calibration.trace, out / "convergence.png", r_max, labels=controlled_labels
    )
    k_sets = (
        {f"estimate {label}": calibration.sh_p[:, k] for k, label in enumerate(controlled_labels)}
        if calibration.conditional
        else {"K": calibration.sh_p}
    )
    paths["k_plot"] = plots.k_distribution(k_sets, out / "k_distribution.png")

    settings = calibration.settings
    kind = "conditional (per theta stratum)" if calibration.conditional else "unconditional"
    lines = [
        f"# Exposure control: {calibration.method.replace('_', ' ')}, {kind}, pool `{pool.name}`",
        "",
        f"**Calibration {calibration.message}.**",
        "",
    ]
    if bundle_path is not None:
        lines += [f"Bundle written: `{Path(bundle_path).name}` (schema qbank.exposure-bundle/1).", ""]
    else:
        reasons = list(validation.problems) if validation is not None else [calibration.message]
        lines += [
            "**No bundle written**: only a converged and validated calibration becomes a bundle. "
            + " ".join(f"{reason}." for reason in reasons),
            "",
        ]
    lines += [
        "## Settings",
        "",
        f"- pool `{pool.name}`: {pool.n_items} items, model {pool.model}, sha256 `{pool.sha256()[:16]}...`",
        f"- target r_max = {r_max:g}; stopping {calibration.stopping.to_dict()}; "
        f"estimator {type(calibration.estimator).__name__}",
        f"- {settings['n_examinees']} simulees per iteration from {settings['theta_distribution']} "
        f"{settings['theta_params']}, at most {settings['max_iter']} iterations, seed {settings['seed']}",
        f"- converged = every controlled max P(A) <= r' + tol and the implied change of P(A) by the parameter "
        f"update <= tol, for {settings['window']} consecutive iterations, whose parameters are then averaged; "
        f"r' = r less the margin z_n sqrt(r(1-r)/N_K) (N_K = {settings['window']} x N simulees behind the "
        f"averaged parameters, z_n the {settings.get('margin_confidence', 0.99):.0%} quantile of the largest "
        "of n capped items), so that fresh simulees stay under r + 3 SE",
    ]
    if calibration.conditional:
        lines.append(
            f"- theta strata cut at {calibration.strata_cuts.tolist()} (true theta for the tallies, "
            "current estimate for the parameter the selector applies)"
        )
    se = calibration.monte_carlo_se
    if settings["tolerance_source"] == "noise":
        tol_text = (
            f"the {settings['confidence']:.0%} quantile of the largest of n capped items' rates, "
            "z_n sqrt(r(1-r)) sqrt(1/N + 1/N_K) (rates and parameters each from N simulees)"
        )
    else:
        tol_text = "given by the user"
    lines += [
        "",
        "## Monte-Carlo noise",
        "",
        f"SE of a rate near r in the last iteration: {', '.join(f'{x:.5f}' for x in se)} "
        f"(sqrt(r(1-r)/N), N = {', '.join(str(int(n)) for n in calibration.examinees)} per controlled stratum). "
        f"Tolerance {', '.join(f'{t:.5f}' for t in calibration.tolerance)}: {tol_text}.",
        "",
        "## Convergence",
        "",
        markdown_table(_trace_table(calibration).reset_index()),
        "",
        f"![convergence]({paths['convergence_plot'].name})",
        "",
        f"![K distribution]({paths['k_plot'].name})",
        "",
    ]

    if validation is not None:
        paths.update(_write_validation(out, calibration, validation))
        figures = validation.figures()
        verdict = "passed" if validation.passed else "FAILED: " + "; ".join(validation.problems)
        lines += [
            f"## Validation on {validation.n_examinees} fresh simulees (seed {validation.seed})",
            "",
            f"**Validation {verdict}.** Largest controlled exposure "
            + ", ".join(
                f"{m:.4f} (limit r + 3 SE = {r_max + t:.4f})"
                for m, t in zip(validation.max_exposure, validation.tolerance)
            )
            + ".",
            "",
            markdown_table(figures.reset_index()),
            "",
            OVER_LIMIT_NOTE,
            "",
        ]
        over = validation.items_over_limit()
        if over.empty:
            lines += ["No item is over the limit.", ""]
        else:
            lines += [f"Items over the limit ({len(over)}):", "", markdown_table(over), ""]
        if validation.uncontrolled is not None:
            price = validation.controlled.summary["rmse"] - validation.uncontrolled.summary["rmse"]
            lines += [f"Price of exposure control in RMSE: {price:+.4f}.", ""]
        lines += [
            "### By true theta stratum",
            "",
            markdown_table(validation.stratum_frame()),
            "",
            f"![exposure sorted]({paths['exposure_plot'].name})",
            "",
            f"![exposure by stratum]({paths['stratum_plot'].name})",
            "",
            f"![conditional accuracy]({paths['conditional_plot'].name})",
            "",
        ]

    if comparison is not None:
        paths["comparison"] = out / "comparison.csv"
        comparison.to_csv(paths["comparison"])
        lines += [
            "## Sympson-Hetter against item eligibility",
            "",
            "Same pool, rules, seed, simulees per iteration and convergence rule; validated on the same "
            "fresh simulees.",
            "",
            markdown_table(comparison.reset_index()),
            "",
        ]
    paths["report"] = out / "report.md"
    paths["report"].write_text("\n".join(lines))
    return paths


def _write_validation(out: Path, calibration: ExposureCalibration, validation: ExposureValidation) -> dict:
    from qbank import plots

    paths = {
        "validation": out / "validation.csv",
        "strata": out / "strata.csv",
        "exposure": out / "exposure.csv",
        "conditional": out / "conditional.csv",
    }
    validation.figures().to_csv(paths["validation"])
    validation.stratum_frame().to_csv(paths["strata"], index=False)
    controlled, uncontrolled = validation.controlled, validation.uncontrolled
    exposure = calibration.sh_p_frame()
    exposure["selection_rate"] = controlled.selection_rate
    exposure["exposure_rate"] = controlled.exposure_rate
    labels = stratum_labels(validation.strata_cuts)
    _, by_stratum = controlled.stratum_rates()
    for j in range(len(labels)):
        exposure[f"exposure_rate_stratum_{j}"] = by_stratum[:, j]
    if uncontrolled is not None:
        exposure["exposure_rate_uncontrolled"] = uncontrolled.exposure_rate
    exposure.to_csv(paths["exposure"], index=False)
    frames = {"with exposure control": controlled.conditional}
    rates = {"with exposure control": controlled.exposure_rate}
    stratum_rates = {"with exposure control": by_stratum}
    if uncontrolled is not None:
        frames["without"] = uncontrolled.conditional
        rates = {"without (before)": uncontrolled.exposure_rate, "with (after)": controlled.exposure_rate}
        stratum_rates = {"without": uncontrolled.stratum_rates()[1], "with": by_stratum}
    pd.concat(frames, names=["run"]).to_csv(paths["conditional"])
    paths["exposure_plot"] = plots.exposure_sorted(
        rates, out / "exposure_sorted.png", target=calibration.r_max
    )
    limits = calibration.r_max + validation.tolerance if validation.conditional else None
    paths["stratum_plot"] = plots.exposure_by_stratum(
        stratum_rates, labels, out / "exposure_by_stratum.png", target=calibration.r_max, limits=limits
    )
    paths["conditional_plot"] = plots.conditional_accuracy(frames, out / "conditional.png")
    return paths
