"""``qbank reestimate``: the nightly exposure job on the service database.

``--mode heuristic`` applies the scaffold's rule on exposure rates (the share of the window's
quizzes that administered each item) to the classic ``sh_p`` in force, as
``POST /v1/admin/exposure/reestimate`` does. ``--mode simulate`` is the proper path:
recalibrate the items with enough recent responses, re-run Sympson-Hetter on the observed
population, validate on fresh simulees and stage the result as a *draft* bundle for an admin
to promote (``POST /v1/admin/exposure/bundles/{id}/promote``); nothing in force changes.

Exit status: 0 on success; 1 when the job could not run or produce a validated bundle; 2 for
bad options. The web stack is imported inside the command (see ``qbank serve``).
"""

from __future__ import annotations

import click

from service.cli.serve import _DB_HELP, _TENANT_HELP, _database_url, _redact, _session, _tenant


def _heuristic(session, tenant, exam_code, days, tau, floor, ceil):
    from service.exposure import reestimate_heuristic

    out = reestimate_heuristic(
        session, tenant, "qbank reestimate", tau=tau, days=days, floor=floor, ceil=ceil, exam_code=exam_code
    )
    click.echo(
        f"heuristic: {out['sessions']} quiz(zes) of {exam_code} in the last {days} day(s); "
        f"{out['updated']} item(s) changed (tau {tau}, sh_p in [{floor}, {ceil}])"
    )
    for row in sorted(out["items"], key=lambda r: -r["exposure_rate"])[:20]:
        click.echo(
            f"  question {row['question_id']} v{row['version']}: exposure rate {row['exposure_rate']:.3f}, "
            f"sh_p {row['sh_p_old']:.4f} -> {row['sh_p_new']:.4f}"
        )
    if len(out["items"]) > 20:
        click.echo(f"  ... and {len(out['items']) - 20} more")
    if out.get("revision_id"):
        click.echo(
            f"new bundle revision {out['revision_id']} (unvalidated): validate it, then promote it, "
            "before new quizzes use it"
        )


def _simulate(session, tenant, exam_code, days, tau, options):
    from service.exposure import ReestimateError, stage_reestimated_bundle

    try:
        out = stage_reestimated_bundle(
            session, tenant, "qbank reestimate", exam_code, days=days, r_max=tau, progress=False, **options
        )
    except ReestimateError as exc:
        raise click.ClickException(f"no bundle staged: {exc}") from None
    population = out["population"]
    for note in out["notes"]:
        click.echo(f"note: {note}")
    click.echo(
        f"population: {population['n']} finished quizzes, theta ~ N({population['mean']:.3f}, "
        f"{population['sd']:.3f})"
    )
    bundle = out["bundle"]
    maxima = ", ".join(f"{m:.4f}" for m in out["validation_max_exposure"])
    click.echo(
        f"Sympson-Hetter converged after {out['iterations']} iteration(s); validation max exposure {maxima} "
        f"(r_max {tau})"
    )
    carried = ", carries its calibration" if bundle["carries_calibration"] else ""
    click.echo(
        f"staged draft bundle {bundle['id']} for exam {exam_code} ({bundle['selector']}, "
        f"{len(out['recalibrated'])} item(s) recalibrated{carried}); "
        f"promote it with POST /v1/admin/exposure/bundles/{bundle['id']}/promote"
    )


@click.command()
@click.option("--db", "db_url", help=_DB_HELP)
@click.option("--tenant", help=_TENANT_HELP)
@click.option("--exam-code", default="DEMO-EXAM", show_default=True)
@click.option(
    "--days", type=click.IntRange(1, 365), default=7, show_default=True, help="Window of recent quizzes."
)
@click.option(
    "--tau",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.2,
    show_default=True,
    help="Target maximum exposure rate.",
)
@click.option("--mode", type=click.Choice(["heuristic", "simulate"]), default="heuristic", show_default=True)
@click.option(
    "--floor", type=click.FloatRange(0, 1), default=0.05, show_default=True, help="heuristic: lowest sh_p."
)
@click.option(
    "--ceil", type=click.FloatRange(0, 1), default=1.0, show_default=True, help="heuristic: highest sh_p."
)
@click.option(
    "--min-quizzes",
    type=click.IntRange(min=2),
    default=30,
    show_default=True,
    help="simulate: finished quizzes needed to estimate the population.",
)
@click.option(
    "--min-responses",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="simulate: responses an item needs to be recalibrated (a GRM/GPCM item also every score category).",
)
@click.option(
    "--examinees",
    type=click.IntRange(min=100),
    default=20_000,
    show_default=True,
    help="simulate: simulees per Sympson-Hetter iteration.",
)
@click.option(
    "--validation-examinees",
    type=click.IntRange(min=100),
    default=50_000,
    show_default=True,
    help="simulate: fresh simulees for the validation.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="simulate: seed (validation: seed + 1).")
def reestimate(
    db_url,
    tenant,
    exam_code,
    days,
    tau,
    mode,
    floor,
    ceil,
    min_quizzes,
    min_responses,
    examinees,
    validation_examinees,
    seed,
):
    """Re-estimate exposure control from the service's recent quizzes (the nightly job)."""
    if floor > ceil:
        raise click.BadParameter(f"{floor} exceeds --ceil {ceil}", param_hint="--floor")
    url, tenant = _database_url(db_url), _tenant(tenant)
    click.echo(f"qbank reestimate --mode {mode} on {_redact(url)} (tenant {tenant})")
    with _session(url) as session:
        if mode == "heuristic":
            _heuristic(session, tenant, exam_code, days, tau, floor, ceil)
        else:
            _simulate(
                session,
                tenant,
                exam_code,
                days,
                tau,
                {
                    "min_quizzes": min_quizzes,
                    "min_responses": min_responses,
                    "n_examinees": examinees,
                    "validation_examinees": validation_examinees,
                    "seed": seed,
                },
            )
