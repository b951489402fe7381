"""qbank delivery service: authoring, publishing and adaptive quizzes on a durable database.

FastAPI + SQLAlchemy 2 + Alembic. Item selection and ability estimation come from the
psychometric core (:mod:`qbank.selection`, :mod:`qbank.estimation`), called with one
examinee; the service never re-implements them. Start it with ``qbank serve``.
"""
