"""Every log line is scrubbed last: no PII or secret in a message, an exception, an extra field;
a task's result never appears in Celery's lines."""

import io
import json
import logging

import pytest

from app import logging as octolog

EMAIL, SSN, CARD = "jane.roe@example.org", "536-22-8726", "4111 1111 1111 1111"
SECRET = "ghp_" + "Zq8" * 12


@pytest.fixture
def capture():
    """A logger writing through the OctoLLM handler setup into buffers (JSON and text)."""
    logger = logging.getLogger("octollm.test.scrub")
    buffers = {}
    handlers = []
    for fmt in ("json", "text"):
        buffers[fmt] = io.StringIO()
        handler = logging.StreamHandler(buffers[fmt])
        octolog.install(handler, "test", json_format=fmt == "json")
        handlers.append(handler)
        logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.INFO
    yield logger, buffers
    for handler in handlers:
        logger.removeHandler(handler)
    logger.propagate = True


def test_pii_and_secrets_are_redacted_in_messages_exceptions_and_extra_fields(capture):
    logger, buffers = capture
    logger.info("contact %s, ssn %s", EMAIL, SSN, extra={"detail": {"card": f"card {CARD}"}})
    try:
        raise ValueError(f"bad input: {SECRET} for {EMAIL}")
    except ValueError:
        logger.exception("failed with token %s", SECRET)
    for text in (b.getvalue() for b in buffers.values()):
        for value in (EMAIL, SSN, CARD, SECRET, SECRET[4:]):
            assert value not in text, (value, text)
        assert "[REDACTED:EMAIL]" in text and "[REDACTED:SSN]" in text
    first, second = (json.loads(line) for line in buffers["json"].getvalue().splitlines())
    assert first["detail"] == {"card": "card [REDACTED:CREDIT_CARD]"}
    assert "ValueError: bad input:" in second["exc_info"]


def test_a_client_chosen_request_id_is_scrubbed_too(capture):
    logger, buffers = capture
    with octolog.bound(request_id=SSN):
        logger.info("hello")
    assert json.loads(buffers["json"].getvalue())["request_id"] == "[REDACTED:SSN]"


def test_client_addresses_stay_readable(capture):
    logger, buffers = capture
    logger.info("from 203.0.113.9")
    assert "203.0.113.9" in buffers["json"].getvalue()


@pytest.mark.parametrize("shown, logged", [
    ("'completed'", "'completed'"), ("3", "3"), ("None", "None"), ("True", "True"),
    ("[{'text': 'jane'}]", "<hidden: 18 chars>"), ("'Jane Roe'", "<hidden: 10 chars>"),
    ("{'redispatched': 1}", "<hidden: 19 chars>"), ("536228726", "<hidden: 9 chars>"),
])
def test_a_tasks_result_is_hidden_from_celerys_success_line(capture, shown, logged):
    logger, buffers = capture
    context = {"id": "x", "name": "octollm.memory.query", "return_value": shown, "runtime": 0.1,
               "args": "()", "kwargs": "{}"}
    logger.info("Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s", context,
                extra={"data": context})
    record = json.loads(buffers["json"].getvalue())
    assert record["message"].endswith(f": {logged}") and record["data"]["return_value"] == logged
    assert buffers["text"].getvalue().rstrip().endswith(f": {logged}")
