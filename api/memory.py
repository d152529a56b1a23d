"""Knowledge ingestion and memory search. The API never opens Qdrant: the memory queue does."""

from __future__ import annotations

import contextlib
import json

import marshmallow as ma
from celery.exceptions import TimeoutError as CeleryTimeout
from flask import current_app, g
from flask.views import MethodView
from marshmallow import validate

from api import errors
from api.auth import require
from api.parsing import Blueprint
from api.schemas import Strict, free_form, not_blank
from app import db, metrics
from app.db import session_scope
from app.errors import ErrorCode
from app.models import Document
from app.pipeline.screening import policy_of
from app.pipeline.submission import gate
from app.reflex import pii, task_fields

blp = Blueprint("memory", __name__, description="Knowledge and episodic memory")
SEARCH_TIMEOUT_SECONDS = 10


class KnowledgeSchema(Strict):
    text = ma.fields.String(required=True, validate=[validate.Length(1, 200_000), not_blank])
    title = ma.fields.String(load_default="", validate=validate.Length(max=500))
    source = ma.fields.String(load_default="", validate=validate.Length(max=1000))
    metadata = free_form(size=None)


class DocumentSchema(ma.Schema):
    document_id = ma.fields.UUID(required=True)
    status = ma.fields.String(required=True)
    title = ma.fields.String()
    chunk_count = ma.fields.Integer()
    redactions = ma.fields.Dict()
    created_at = ma.fields.DateTime()
    indexed_at = ma.fields.DateTime(allow_none=True)


class SearchArgs(Strict):
    q = ma.fields.String(required=True, validate=validate.Length(1, 2000))
    collection = ma.fields.String(load_default="episodes",
                                  validate=validate.OneOf(["episodes", "knowledge"]))
    limit = ma.fields.Integer(load_default=5, validate=validate.Range(1, 50))


class SearchResultSchema(ma.Schema):
    results = ma.fields.List(ma.fields.Dict())


def _runtime():
    return current_app.extensions["octollm"]


def _celery():
    return current_app.extensions["octollm_celery"]


@blp.route("/knowledge")
class Knowledge(MethodView):
    @blp.arguments(KnowledgeSchema)
    @blp.response(202, DocumentSchema)
    @blp.alt_response(400, schema=errors.ErrorSchema, description="Invalid document")
    @require("knowledge:write")
    def post(self, body):
        """Add a document to the tenant's knowledge (stored, then chunked and indexed)."""
        rt = _runtime()
        # The same gate as POST /submit: the reflex layer's verdict under the deployment's
        # policy. Block (critical injection, a deny term, PII in a field the policy blocks on)
        # is a 400 with masked matches; other PII is redacted before the row is written, in
        # source and metadata too: they reach the Qdrant payload and the retriever's answers.
        policy = policy_of(rt)
        metadata_fields = task_fields("", metadata=body["metadata"])
        fields = {"text": body["text"], "title": body["title"], "source": body["source"],
                  **{k: v for k, v in metadata_fields.items() if k.startswith("metadata.")}}
        report = gate(rt, fields)
        public = report.public()
        if public["action"] == "block":
            metrics.REFLEX_BLOCKED.labels(stage="knowledge").inc()
            raise errors.ApiError(
                400, "the document was rejected by the reflex layer: "
                + "; ".join(public.get("reasons") or []),
                error=ErrorCode.BLOCKED_BY_REFLEX, details=public)
        text = report.redacted.get("text", body["text"])
        title = report.redacted.get("title", body["title"])
        source = report.redacted.get("source", body["source"])
        metadata, _ = pii.redact_json(body["metadata"], policy.disabled_types)
        doc = Document(tenant=g.tenant, title=title, source=source, text=text,
                       doc_metadata=metadata)
        redactions = _document_redactions(doc)
        with session_scope(rt.settings) as session:
            session.add(doc)
            session.flush()
            session.refresh(doc)
        with contextlib.suppress(Exception):  # the row is kept: it stays "pending" until re-sent
            _celery().signature("octollm.memory.ingest", args=(str(doc.id),)).apply_async(
                retry=True, retry_policy={"max_retries": 1})
        return {"document_id": doc.id, "status": doc.status or "pending", "title": title,
                "chunk_count": 0, "redactions": redactions, "created_at": doc.created_at,
                "indexed_at": None}


def _document_redactions(doc: Document) -> dict[str, int]:
    return pii.marker_counts(doc.title, doc.text, doc.source,
                             json.dumps(doc.doc_metadata or {}, ensure_ascii=False))


@blp.route("/knowledge/<document_id>")
class KnowledgeItem(MethodView):
    @blp.response(200, DocumentSchema)
    @blp.alt_response(404, schema=errors.ErrorSchema, description="No such document")
    @require("tasks:read")
    def get(self, document_id: str):
        """A knowledge document's indexing status."""
        uid = db.as_uuid(document_id)
        with session_scope(_runtime().settings) as session:
            doc = session.get(Document, uid) if uid else None
            if doc is None or doc.tenant != g.tenant:
                raise errors.ApiError(404, f"document {document_id} not found")
            return {"document_id": doc.id, "status": doc.status, "title": doc.title,
                    "chunk_count": doc.chunk_count,
                    "redactions": _document_redactions(doc),
                    "created_at": doc.created_at, "indexed_at": doc.indexed_at}


@blp.route("/memory/search")
class MemorySearch(MethodView):
    @blp.arguments(SearchArgs, location="query")
    @blp.response(200, SearchResultSchema)
    @blp.alt_response(503, schema=errors.ErrorSchema, description="Memory worker unavailable")
    @require("tasks:read")
    def get(self, args):
        """Search the tenant's past episodes or knowledge by meaning (query in the URL)."""
        return _search(args)

    @blp.arguments(SearchArgs)
    @blp.response(200, SearchResultSchema)
    @blp.alt_response(503, schema=errors.ErrorSchema, description="Memory worker unavailable")
    @require("tasks:read")
    def post(self, args):
        """Search the tenant's past episodes or knowledge by meaning (query in a JSON body, which
        no proxy or access log records)."""
        return _search(args)


def _search(args: dict) -> dict:
    # Stored knowledge and episodes are redacted, so the query is too: a raw SSN could match
    # nothing but its marker, and the query text goes on to the broker, the memory worker and
    # the result backend, none of which may hold PII in clear.
    query, _ = pii.redact(args["q"], policy_of(_runtime()).disabled_types)
    try:
        result = _celery().signature(
            "octollm.memory.query",
            args=(g.tenant, query, args["collection"], args["limit"])).apply_async(
            retry=True, retry_policy={"max_retries": 1, "interval_start": 0,
                                      "interval_step": 0.2})
    except Exception as exc:  # the broker refused: unavailable, not a 500
        raise errors.ApiError(503, f"memory search failed: {type(exc).__name__}",
                              headers={"Retry-After": errors.RETRY_AFTER_SECONDS}) from None
    try:
        hits = result.get(timeout=SEARCH_TIMEOUT_SECONDS, propagate=True)
    except CeleryTimeout:
        raise errors.ApiError(503, "the memory worker did not answer in time",
                              headers={"Retry-After": errors.RETRY_AFTER_SECONDS}) from None
    except Exception as exc:  # surfaced as unavailable, not as a 500
        raise errors.ApiError(503, f"memory search failed: {type(exc).__name__}",
                              headers={"Retry-After": errors.RETRY_AFTER_SECONDS}) from None
    finally:
        # Unsubscribe now, while the backend is open, not later from the garbage collector.
        result.backend.remove_pending_result(result)
        result.forget()
    return {"results": hits}
