"""Entry point of the ``qbank`` command. Each subcommand lives in its own module and is
registered here with ``cli.add_command``; errors a user can fix become ``click`` usage
errors naming the bad option, field or row, never a traceback."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qbank")
def cli():
    """qbank: computerized adaptive testing with proper Sympson-Hetter exposure control."""


def _register():
    # Imported lazily-by-module so one broken optional subcommand cannot hide the others.
    from qbank.cli import analytics as _analytics
    from qbank.cli import calibrate as _calibrate
    from qbank.cli import demo as _demo
    from qbank.cli import publish as _publish
    from qbank.cli import reestimate as _reestimate
    from qbank.cli import serve as _serve
    from qbank.cli import sh as _sh
    from qbank.cli import simulate as _simulate
    from qbank.cli import study as _study

    cli.add_command(_simulate.simulate)
    cli.add_command(_sh.sh)
    cli.add_command(_calibrate.calibrate)
    cli.add_command(_demo.demo)
    cli.add_command(_serve.serve)
    cli.add_command(_serve.load_demo_command)
    cli.add_command(_serve.import_calibration_command)
    cli.add_command(_serve.create_user_command)
    cli.add_command(_study.study)
    cli.add_command(_analytics.analytics)
    cli.add_command(_publish.publish)
    cli.add_command(_reestimate.reestimate)


_register()

if __name__ == "__main__":  # pragma: no cover
    cli()
