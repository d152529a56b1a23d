"""Property-based fuzzing of every documented endpoint with every schemathesis check: no 5xx, every
answer matches the document, schema-valid input is accepted and schema-invalid input refused."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS as REGISTRY
from schemathesis.checks import load_all_checks, not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api import create_app
from tests.support.apps import dead_broker, make_key

pytestmark = pytest.mark.integration
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
load_all_checks()
EVERY_CHECK = REGISTRY.get_all()


def fuzz_config() -> SchemathesisConfig:
    config = SchemathesisConfig()
    project = config.projects.default
    # The API key is sent by the test (a valid one, every time): the security parameters are not
    # generated, or a mangled Authorization header next to a valid X-API-Key would count as
    # invalid input the server "should" refuse.
    project.generation.update(with_security_parameters=False)
    # 413 is the documented answer to a body over OCTOLLM_MAX_BODY_BYTES whatever it holds: the
    # limit is on encoded bytes, which no JSON Schema keyword bounds (200000 characters of text
    # are 200 KB or 2.4 MB depending on the characters and their escaping).
    for check in (project.checks.positive_data_acceptance, project.checks.negative_data_rejection):
        check.expected_statuses = [*check.expected_statuses, "413"]
    return config


@pytest.fixture(scope="module")
def fuzz_app(runtime):
    # A dead broker keeps fuzzed submissions in the database only: they never reach workers, and
    # memory search answers its documented 503 at once instead of waiting for a worker.
    settings = runtime.settings.replace(auth_disabled=False)
    return create_app(settings, celery=dead_broker(settings)), make_key(settings, "fuzz")


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app[0], config=fuzz_config())


@pytest.fixture(scope="module")
def finished_task(fuzz_app) -> str:
    """A cancelled task: its event stream replays the history and closes, as fuzzing needs."""
    app, key = fuzz_app
    c = app.test_client()
    headers = {"X-API-Key": key}
    task_id = c.post("/submit", json={"goal": "Run `echo fuzzed events`"},
                     headers=headers).get_json()["task_id"]
    assert c.post(f"/tasks/{task_id}/cancel", headers=headers).status_code == 200
    return task_id


def _operations(schema):
    for result in schema.get_all_operations():
        yield result.ok()


def _fuzz(operation, mode, call, max_examples: int) -> bool:
    """Run ``call(case)`` on generated cases; False when nothing invalid can be made."""
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case):
        call(case)

    try:
        fuzz()
    except Unsatisfiable:
        return False
    return True


def _checked(case, finished_task: str, headers: dict) -> None:
    if case.operation.path.endswith("/events") and case.path_parameters is not None:
        # A random id is a 404; the finished task's stream exercises the real answer.
        case.path_parameters["task_id"] = finished_task
    checks = EVERY_CHECK
    if case.operation.path == "/memory/search":
        # Its documented 503 (broker refused, worker timeout) is an answer, not a server error.
        checks = [c for c in EVERY_CHECK if c is not not_a_server_error]
    response = case.call(headers=headers)
    assert response.status_code != 500, response.text
    # Told which headers were sent, ignored_auth knows the key is a real one: it sends the request
    # again without it, and with a wrong one, and expects 401.
    case.validate_response(response, checks=checks, headers=headers)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_check_finds_the_document_and_the_server_in_agreement(api_schema, fuzz_app,
                                                                    finished_task, mode):
    headers = {"X-API-Key": fuzz_app[1]}
    operations = list(_operations(api_schema))
    paths = {o.path for o in operations}
    assert len(operations) >= 10 and {"/tasks/{task_id}/events", "/memory/search"} <= paths
    unsatisfiable = []
    for operation in operations:
        takes_input = any(len(group) for group in (operation.body, operation.query,
                                                   operation.path_parameters))
        if mode == GenerationMode.NEGATIVE and not takes_input:
            continue  # nothing to make invalid
        # Free-form inputs (a path id accepts any string) may leave nothing invalid to send.
        if not _fuzz(operation, mode, lambda case: _checked(case, finished_task, headers), 25):
            unsatisfiable.append(f"{operation.method.upper()} {operation.path}")
    assert not {"POST /submit", "GET /tasks", "POST /knowledge"} & set(unsatisfiable)


@pytest.fixture(scope="module")
def secured_schema(runtime):
    settings = runtime.settings.replace(auth_disabled=False)
    return schemathesis.openapi.from_wsgi("/openapi.json",
                                          create_app(settings, celery=dead_broker(settings)))


def test_with_authentication_on_401_and_403_are_documented_answers(runtime, secured_schema,
                                                                    finished_task):
    full = make_key(runtime.settings, "fuzz")
    reader = make_key(runtime.settings, "fuzz", ["tasks:read"])
    seen: set[int] = set()

    def call(case, who):
        headers = {"none": {}, "wrong": {"X-API-Key": "octo_nope_nope"},
                   "reader": {"X-API-Key": reader}, "full": {"X-API-Key": full}}[who]
        response = case.call(headers=headers)
        seen.add(response.status_code)
        if case.operation.path == "/memory/search":
            assert response.status_code != 500, response.text
            case.validate_response(response, checks=CHECKS[1:])
        else:
            case.validate_response(response, checks=CHECKS)

    for operation in _operations(secured_schema):
        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
               who=st.sampled_from(["none", "wrong", "reader", "full"]))
        @settings(max_examples=12, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case, who):
            call(case, who)

        fuzz()
    assert {401, 403} <= seen


def test_document_describes_every_endpoint_and_the_error_format(client):
    document = client.get("/openapi.json").get_json()
    paths = document["paths"]
    for path in ("/submit", "/tasks", "/tasks/{task_id}", "/tasks/{task_id}/cancel",
                 "/tasks/{task_id}/retry", "/tasks/{task_id}/events", "/health", "/ready",
                 "/metrics", "/", "/knowledge", "/memory/search"):
        assert path in paths, path
    submit = paths["/submit"]["post"]["responses"]
    assert {"202", "400", "409", "413"} <= set(submit)
    error = document["components"]["schemas"]["Error"]["properties"]
    assert set(error) == {"error", "message", "details", "request_id"}


PUBLIC = {("get", "/"), ("get", "/health"), ("get", "/ready"), ("get", "/metrics")}


def _operations_of(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield method, path, operation


def test_document_lists_only_answers_the_api_sends(client):
    document = client.get("/openapi.json").get_json()
    for method, path, operation in _operations_of(document):
        responses = operation["responses"]
        assert "422" not in responses, (method, path)  # validation failures are 400
        assert "400" in responses, (method, path)  # unknown query parameters, at least
        if method == "post":
            assert "415" in responses, (method, path)
        if "requestBody" in operation:
            assert "413" in responses, (method, path)
        if "503" in responses:
            assert "Retry-After" in responses["503"]["headers"], (method, path)


def test_document_describes_authentication_and_headers(client):
    document = client.get("/openapi.json").get_json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {"type": "apiKey", "in": "header", "name": "X-API-Key",
                                     "description": schemes["ApiKeyAuth"]["description"]}
    assert schemes["BearerAuth"]["type"] == "http" and schemes["BearerAuth"]["scheme"] == "bearer"
    for method, path, operation in _operations_of(document):
        headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        assert "X-Request-ID" in headers, (method, path)
        if (method, path) in PUBLIC:
            assert "security" not in operation, (method, path)
            continue
        assert operation["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}], (method, path)
        assert {"401", "403", "429", "503"} <= set(operation["responses"]), (method, path)
        assert operation["x-required-scope"] in operation["responses"]["403"]["description"]
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
        assert "Retry-After" in operation["responses"]["429"]["headers"]
    submit = document["paths"]["/submit"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header"
               and p["schema"]["maxLength"] == 200 for p in submit["parameters"])
    events = document["paths"]["/tasks/{task_id}/events"]["get"]
    names = {(p["in"], p["name"]) for p in events["parameters"]}
    assert {("header", "Last-Event-ID"), ("query", "last_event_id")} <= names
    assert document["paths"]["/ready"]["get"]["responses"]["503"]["headers"]["Retry-After"]
