"""schemathesis against the OpenAPI document, in-process over ASGI, with valid keys.

Every operation is called with generated requests using an admin key; each request the API
accepts is sent again with a key holding only the operation's own scope (read from the route
table), which must be accepted just the same. Each answer must not be
a 5xx and must conform to the document: declared status code, content type, headers and
body schema. The application runs with its own stores on schemathesis's event loop; the
rows generated here are wiped by the next test's `db` fixture.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.auth.models import Scope
from app.main import create_app
from app.ops.routes import api_routes, required_scopes
from app.runtime import Runtime
from tests.conftest import KeyMaker, bearer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 12
# The device import takes NDJSON as a plain text stream.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
STATUSES: Counter[int] = Counter()


@pytest.fixture
async def fuzz_keys(db: Runtime, make_key: KeyMaker) -> dict[str, str]:
    return {scope.value: await make_key(scope, name=f"fuzz {scope.value}") for scope in Scope}


@pytest.fixture
def fuzz_app(db: Runtime) -> Iterator[FastAPI]:
    # No runtime passed: the app opens its own stores on schemathesis's event loop.
    yield create_app(db.settings)
    asgi.shutdown_lifespans()


# The document is the application's own; each call goes to the fixture's app in-process.
_DOCUMENT_APP = create_app()
schema = schemathesis.openapi.from_dict(_DOCUMENT_APP.openapi())
schema.app = _DOCUMENT_APP
SCOPE_OF = {
    (method, route.path): next(iter(required_scopes(route)), None)
    for route in api_routes(_DOCUMENT_APP)
    for method in route.methods or ()
}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_conform_and_never_fail(
    case: schemathesis.Case, fuzz_app: FastAPI, fuzz_keys: dict[str, str]
) -> None:
    call = {"checks": CHECKS, "app": fuzz_app}
    answer = case.call_and_validate(headers=bearer(fuzz_keys[Scope.admin.value]), **call)
    STATUSES[answer.status_code] += 1
    needed = SCOPE_OF.get((case.method.upper(), case.path))
    if answer.status_code < 300 and needed is not None and needed is not Scope.admin:
        # The same accepted request again with the least key that may make it.
        again = case.call_and_validate(headers=bearer(fuzz_keys[needed.value]), **call)
        STATUSES[again.status_code] += 1
        assert again.status_code not in (401, 403), again.text


def test_schemathesis_made_requests() -> None:
    # Runs after the fuzzing above (file order); the figure is printed for the report.
    total = sum(STATUSES.values())
    print(f"\nschemathesis requests made: {total}; by status: {sorted(STATUSES.items())}")
    if total == 0:
        pytest.skip("the fuzzing tests did not run in this session")
