"""Property-based fuzzing of every operation of the OpenAPI schema (schemathesis), on SQLite and
PostgreSQL, with the demo bank loaded and a token holding every role: no 5xx, and every status
code, content type and body as documented. Valid and invalid cases (schemathesis' positive and
negative modes), FUZZ_EXAMPLES of each per operation, derandomized so a failure repeats."""

from __future__ import annotations

import time
from collections import Counter

import schemathesis
from exposure_support import SECRET, service_settings
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.core.security import create_token
from service.main import create_app

FUZZ_EXAMPLES = 5
TENANT = "00000000-0000-0000-0000-000000000001"
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_every_operation_answers_as_documented(db, loaded_bank):
    app = create_app(service_settings(db))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    roles = ["student", "author", "publisher", "admin"]
    statuses: Counter = Counter()
    seconds: Counter = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=FUZZ_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case):
                # A fresh token per case: a fuzzed POST /v1/auth/logout revokes the one it carries.
                token = create_token("fuzzer", roles, TENANT, secret=SECRET, ttl_minutes=60)
                response = case.call_and_validate(
                    headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, timeout=60
                )
                statuses[response.status_code] += 1

            started = time.perf_counter()
            try:
                fuzz()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to make invalid (no parameters)
            seconds[operation.label] += time.perf_counter() - started
    print(f"{sum(statuses.values())} cases on {len(operations)} operations: {dict(sorted(statuses.items()))}")
    print("slowest:", [(label, round(t, 1)) for label, t in seconds.most_common(5)])
    assert not any(code >= 500 for code in statuses)
