"""The delivery service's commands. They join the one ``qbank`` command through the ``qbank.cli``
entry point (pyproject.toml), which names :data:`COMMANDS`; the core never imports the service.
Keys are command paths, values (module:attribute, short help = the docstring's first sentence),
so ``qbank --help`` lists them without importing the web stack."""

COMMANDS = {
    "serve": (
        "service.cli.serve:serve",
        "Migrate the database, then run the delivery service (uvicorn).",
    ),
    "load-demo": (
        "service.cli.serve:load_demo_command",
        "Load the demo bank (600 questions, published and calibrated for DEMO-EXAM).",
    ),
    "import-calibration": (
        "service.cli.serve:import_calibration_command",
        "Import item parameters from a pool CSV/Parquet (item_id = question external_ref).",
    ),
    "create-user": (
        "service.cli.serve:create_user_command",
        "Create a user who logs in with POST /v1/auth/login (password stored as an argon2 hash).",
    ),
    "audit-quiz": (
        "service.cli.serve:audit_quiz_command",
        "Replay a served quiz in the core under the rules it pinned: identical, or the first position "
        "where it diverges and why (exit status 1).",
    ),
    "reestimate": (
        "service.cli.reestimate:reestimate",
        "Re-estimate exposure control from the service's recent quizzes (the nightly job).",
    ),
    "demo": (
        "service.cli.demo:demo",
        "Simulation study on the demo pool (simulations/demo.toml); with --serve, the whole loop.",
    ),
    "relay": (
        "service.cli.relay:relay",
        "Publish the outbox's events to a broker, at least once and in order per quiz.",
    ),
    "analytics export": (
        "service.cli.analytics:export",
        "Write a Parquet snapshot (facts and views) of the service database to --out.",
    ),
    "analytics targets": (
        "service.cli.analytics:targets",
        "Replace the blueprint targets of the exams in FILE.csv (columns exam_code, topic, "
        "difficulty_label, target_items; topic is a topic name or id).",
    ),
}
