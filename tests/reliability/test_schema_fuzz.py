"""Requests generated from the published OpenAPI schema (schemathesis, in-process against the WSGI
app): valid and invalid ones alike never get a 500, and every answer matches the schema.

Tested with schemathesis 4.32.5. Its pytest plugin does not mix with pytest-django's fixtures, so
each operation gets a plain hypothesis test over the operation's strategy.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from shepherd.wsgi import application
from tests.factories import token_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SCHEMA = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
EXAMPLES = 20
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_generated_request_gets_a_500_or_an_answer_outside_the_schema(label: str):
    operation = OPERATIONS[label]
    auth = {"Authorization": f"Token {token_for('fuzz')}"}
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                         operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def call(case) -> None:
        case.call_and_validate(headers=auth, checks=CHECKS)

    call()
