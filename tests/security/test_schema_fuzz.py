"""Schemathesis against the OpenAPI document the app serves: no 500, no schema violation.

Every operation gets a bounded, deterministic set of generated requests (positive and negative
data, as schemathesis 4 generates them) sent in-process over ASGI with an administrator's token,
so admin routes are fuzzed past the role check too. Path ids are replaced by the fuzzer's own
pose, generation and pose request: random UUIDs would only ever reach the 404 (which
test_authorization covers), while real ones take the generated bodies into the domain code.
Prefect is unreachable, so anything that would start a run answers its documented 503
(refunded at once), and rate limits are off so every example reaches the route.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from posegen.api.app import create_app
from posegen.db.models import User
from posegen.db.session import session_scope
from posegen.domain.pose_requests import PoseRequestCreate, create_request
from tests.api.conftest import Account, Generated

# Loaded once at import: the app reads its settings per request, so fixtures can still point
# it at the test's database and storage. (`schemathesis.pytest.from_fixture` would be the
# lazy way, but schemathesis 4.32's lazy loader does not run on pytest 9.)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())


@dataclass(frozen=True)
class Fuzzer:
    account: Account
    path_ids: dict[str, str]


@pytest.fixture
def fuzzer(
    db_url: str,
    prefect_unreachable: None,
    no_rate_limits: None,
    new_account: Callable[..., Account],
    new_generation: Callable[[Account], Generated],
) -> Fuzzer:
    admin = new_account(admin=True, credits=1000)
    generated = new_generation(admin)
    with session_scope(db_url) as session:
        user = session.get(User, admin.id)
        assert user is not None
        request = create_request(session, user, PoseRequestCreate(pose_name="Fuzzed pose"))
        request_id = str(request.id)
    return Fuzzer(
        admin,
        {
            "pose_id": str(generated.pose_id),
            "generation_id": str(generated.generation_id),
            "request_id": request_id,
        },
    )


def no_undocumented_server_error(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """`not_a_server_error`, except for a 503 the operation documents (Prefect is down here)."""
    if response.status_code == 503 and "503" in case.operation.definition.raw.get("responses", {}):
        return None
    return not_a_server_error(ctx, response, case)


@schema.parametrize()
@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_every_generated_request_without_500_or_schema_violation(
    case: schemathesis.Case, fuzzer: Fuzzer
) -> None:
    for name, value in fuzzer.path_ids.items():
        if case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = value
    case.call_and_validate(
        headers=fuzzer.account.headers,
        checks=[no_undocumented_server_error, response_schema_conformance],
    )
