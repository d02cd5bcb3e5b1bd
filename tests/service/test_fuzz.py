"""Schema-driven fuzzing (Schemathesis) of every operation in the OpenAPI document, against the real app on a real
Redis, with valid and with invalid requests: no 5xx but 503 with Retry-After, every status one the document declares,
every body matching its schema."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.conftest import LiveServer, service_settings
from tiles.embedded_redis import EmbeddedRedis

EXAMPLES_PER_OPERATION = 100  # 11 operations: about 1,100 requests in all


@pytest.fixture(scope="module")
def fuzz_server(tiny_model: Path) -> Iterator[LiveServer]:
    # A Redis and server of their own: fuzzed worlds and jobs stay out of the other tests' way. No worker: jobs stay
    # queued (running inversions is not what this checks).
    with EmbeddedRedis(maxmemory="64mb") as redis_server:
        limits = {"outpaint_max_upload_bytes": 200_000, "outpaint_max_pixels": 1_000_000}
        settings_ = service_settings(redis_server.url, tiny_model, outpaint_worker=False, **limits)
        with LiveServer(settings_) as server:
            yield server


def test_fuzzed_requests_get_declared_answers(fuzz_server: LiveServer) -> None:
    """(Schemathesis's pytest plugin does not run on this pytest; its strategies are driven with Hypothesis here.)"""
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json")
    requests: Counter[str] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation, mode in itertools.product(operations, modes):
        try:
            strategy = operation.as_strategy(generation_mode=mode)
        except Exception:  # noqa: BLE001 - an operation without parameters has no invalid requests to make
            continue

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,  # the same requests on every run: a failure reproduces
        )
        def check(case) -> None:
            response = case.call(base_url=fuzz_server.base_url, timeout=60)
            requests[case.operation.label] += 1
            if response.status_code == 503:
                assert response.headers.get("retry-after"), f"{case.operation.label}: a 503 must say when to retry"
                return
            case.validate_response(
                response,
                checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                        response_schema_conformance],
            )  # fmt: skip

        try:
            check()
        except Unsatisfiable:  # e.g. only free-form string parameters: nothing is invalid to send
            assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    assert sum(requests.values()) >= 1000, requests
