"""The ``qbank`` command line: one module per subcommand, collected in :mod:`qbank.cli.main`."""
