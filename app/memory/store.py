"""Qdrant-backed memory: knowledge chunks and past episodes, always filtered by tenant.

The same class talks to a Qdrant server (``OCTOLLM_QDRANT_URL``) or an embedded storage folder
(``OCTOLLM_QDRANT_PATH``). An embedded folder is locked by the process that opens it, which is why
only the memory worker (one process) ever builds a MemoryStore; arms receive search results in
their step inputs instead.

Every read and delete carries a tenant condition in its payload filter: one tenant never sees,
and never erases, another's data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from app.config import Settings
from app.errors import OctoError
from app.memory.embedders import Embedder, get_embedder
from app.memory.episodes import (
    EPISODE_COLLECTIONS,
    PLANNER,
    chunk_point_id,
    episode_collections,
    episode_from_payload,
    episode_payload,
    episode_point_id,
    episode_text,
)

KNOWLEDGE = "knowledge"
COLLECTIONS = (KNOWLEDGE, *EPISODE_COLLECTIONS)
# Fields filtered on by every search; a server indexes them so filters stay fast as data grows.
INDEXED_FIELDS = {
    "tenant": qm.PayloadSchemaType.KEYWORD,
    "success": qm.PayloadSchemaType.BOOL,
    "flagged": qm.PayloadSchemaType.BOOL,
    "embedder": qm.PayloadSchemaType.KEYWORD,
    "task_id": qm.PayloadSchemaType.KEYWORD,
    "document_id": qm.PayloadSchemaType.KEYWORD,
}


class MemoryStoreError(OctoError):
    code = "MEMORY_ERROR"


class MemoryStore:
    def __init__(self, client: QdrantClient, embedder: Embedder, *, server: bool) -> None:
        self.client = client
        self.embedder = embedder
        # Payload indexes exist only on a server; the embedded engine warns they do nothing.
        self.server = server

    @classmethod
    def connect(cls, url: str | None = None, path: str | None = None, api_key: str | None = None,
                embedder: Embedder | str | None = None, timeout: int = 10) -> MemoryStore:
        """A server when ``url`` is given, else the embedded storage folder at ``path``."""
        if not isinstance(embedder, Embedder):
            embedder = get_embedder(embedder)
        if url:
            # check_compatibility would make a version request (and warn) at construction time;
            # readiness is checked by the caller with healthy() instead.
            client = QdrantClient(url=url, api_key=api_key, timeout=timeout,
                                  check_compatibility=False)
            return cls(client, embedder, server=True)
        if not path:
            raise MemoryStoreError("Qdrant needs OCTOLLM_QDRANT_URL or OCTOLLM_QDRANT_PATH")
        return cls(QdrantClient(path=path), embedder, server=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryStore:
        return cls.connect(url=settings.qdrant_url, path=settings.qdrant_path,
                           api_key=settings.qdrant_api_key, embedder=settings.embedder)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def healthy(self) -> bool:
        try:
            self.client.get_collections()
            return True
        except Exception:  # any transport error means "not ready", which is all a probe needs
            return False

    # -- collections ----------------------------------------------------------------------------
    def ensure_collections(self, *, recreate_mismatched: bool = False) -> list[str]:
        """Create missing collections (and their payload indexes on a server); return the new ones.

        A collection sized for another embedder cannot be searched with this one. It is an error
        unless ``recreate_mismatched``: PostgreSQL holds every episode and document, so a dropped
        collection is refilled by reconciliation and re-ingestion.
        """
        created = []
        for name in COLLECTIONS:
            if self.client.collection_exists(name):
                size = self._vector_size(name)
                if size == self.embedder.dim:
                    continue
                if not recreate_mismatched:
                    raise MemoryStoreError(
                        f"Qdrant collection {name!r} holds {size}-dimensional vectors but embedder "
                        f"{self.embedder.name!r} makes {self.embedder.dim}; drop the collection "
                        "(it is rebuilt from PostgreSQL) or set OCTOLLM_EMBEDDER back",
                        details={"collection": name, "size": size, "dim": self.embedder.dim})
                self.client.delete_collection(name)
            try:
                self.client.create_collection(name, vectors_config=qm.VectorParams(
                    size=self.embedder.dim, distance=qm.Distance.COSINE))
            except Exception:
                # Two workers starting together on one server: the loser finds it made.
                if not self.client.collection_exists(name):
                    raise
            created.append(name)
            if self.server:
                for field, schema in INDEXED_FIELDS.items():
                    self.client.create_payload_index(name, field, field_schema=schema)
        return created

    def _vector_size(self, name: str) -> int | None:
        vectors = self.client.get_collection(name).config.params.vectors
        if isinstance(vectors, qm.VectorParams):
            return vectors.size
        return None

    # -- episodes -------------------------------------------------------------------------------
    def index_episode(self, episode: dict[str, Any]) -> str:
        """Upsert a finished task's episode; the same task always lands on the same point."""
        payload = episode_payload(episode, self.embedder.name)
        point_id = episode_point_id(payload["task_id"])
        [vector] = self.embedder.embed([episode_text(payload["goal"])])
        for name in episode_collections(payload):
            self.client.upsert(name, points=[qm.PointStruct(id=point_id, vector=vector,
                                                            payload=payload)])
        return point_id

    def has_episode(self, task_id: str) -> bool:
        return not self.missing_episodes([task_id])

    def missing_episodes(self, task_ids: Iterable[str]) -> list[str]:
        """The task ids whose episode is absent, or was embedded by another embedder."""
        wanted = {episode_point_id(str(t)): str(t) for t in task_ids}
        if not wanted:
            return []
        found = self.client.retrieve(PLANNER, ids=list(wanted), with_payload=["embedder"])
        present = {str(r.id) for r in found
                   if (r.payload or {}).get("embedder") == self.embedder.name}
        return [task_id for point_id, task_id in wanted.items() if point_id not in present]

    def search_episodes(self, tenant: str, text: str, collection: str = PLANNER,
                        only_successful: bool = True, limit: int = 5) -> list[dict[str, Any]]:
        """Past episodes of this tenant most similar to ``text``, best first, with ``score``.

        ``only_successful`` keeps the episodes fit to learn from: completed, and neither flagged
        nor blocked by the reflex layer (episodes indexed before ``flagged`` existed count as
        not flagged).
        """
        if collection not in EPISODE_COLLECTIONS:
            raise ValueError(f"{collection!r} is not an episode collection")
        extra = [_match("success", True)] if only_successful else []
        exclude = [_match("flagged", True)] if only_successful else []
        points = self._query(collection, tenant, episode_text(text), limit, extra, exclude)
        return [episode_from_payload(p.payload or {}, _clamp(p.score), collection) for p in points]

    # -- knowledge ------------------------------------------------------------------------------
    def index_chunks(self, tenant: str, document_id: str, chunks: list[str],
                     metadata: dict[str, Any] | None = None) -> int:
        """Upsert a document's chunks and drop any left over from a longer earlier version."""
        _require_tenant(tenant)
        metadata = dict(metadata or {})
        texts = [c for c in chunks if c and c.strip()]
        vectors = self.embedder.embed(texts) if texts else []
        source = str(metadata.get("source") or metadata.get("title") or document_id)
        points = [
            qm.PointStruct(id=chunk_point_id(tenant, document_id, i), vector=vector, payload={
                "tenant": tenant, "document_id": str(document_id), "chunk_index": i,
                "chunk_count": len(texts), "text": text, "source": source,
                "title": str(metadata.get("title") or ""), "metadata": metadata,
                "embedder": self.embedder.name,
            })
            for i, (text, vector) in enumerate(zip(texts, vectors, strict=True))
        ]
        if points:
            self.client.upsert(KNOWLEDGE, points=points)
        stale = qm.Filter(must=[
            _match("tenant", tenant), _match("document_id", str(document_id)),
            qm.FieldCondition(key="chunk_index", range=qm.Range(gte=len(points))),
        ])
        self.client.delete(KNOWLEDGE, points_selector=qm.FilterSelector(filter=stale))
        return len(points)

    def search_knowledge(self, tenant: str, query: str, limit: int = 5) -> list[dict[str, Any]]:
        """Knowledge hits: {text, score, source, collection, metadata}, best first."""
        hits = []
        for p in self._query(KNOWLEDGE, tenant, query, limit, []):
            payload = p.payload or {}
            meta = dict(payload.get("metadata") or {})
            meta.update(document_id=payload.get("document_id"),
                        chunk_index=payload.get("chunk_index"), title=payload.get("title", ""))
            hits.append({"text": payload.get("text", ""), "score": _clamp(p.score),
                         "source": payload.get("source", ""), "collection": KNOWLEDGE,
                         "metadata": meta})
        return hits

    # -- deletion -------------------------------------------------------------------------------
    def delete_document(self, tenant: str, document_id: str) -> None:
        _require_tenant(tenant)
        selector = qm.FilterSelector(filter=qm.Filter(
            must=[_match("tenant", tenant), _match("document_id", str(document_id))]))
        self.client.delete(KNOWLEDGE, points_selector=selector)

    def delete_tenant_data(self, tenant: str) -> None:
        _require_tenant(tenant)
        selector = qm.FilterSelector(filter=qm.Filter(must=[_match("tenant", tenant)]))
        for name in COLLECTIONS:
            self.client.delete(name, points_selector=selector)

    # -- internals ------------------------------------------------------------------------------
    def _query(self, collection: str, tenant: str, text: str, limit: int,
               extra: Sequence[qm.Condition] = (),
               exclude: Sequence[qm.Condition] = ()) -> list[qm.ScoredPoint]:
        _require_tenant(tenant)
        if limit < 1 or not (text or "").strip():
            return []
        [vector] = self.embedder.embed([text])
        scope = _match("tenant", tenant)
        # Vectors from another embedder live in another space: their scores would be noise.
        must = [_match("embedder", self.embedder.name), *extra]
        if not self.server:
            found = self._embedded_query(collection, vector, scope, limit, must, exclude)
            if found is not None:
                return found
        query_filter = qm.Filter(must=[scope, *must], must_not=list(exclude) or None)
        response = self.client.query_points(collection, query=vector, limit=limit,
                                            query_filter=query_filter, with_payload=True)
        return list(response.points)

    def _embedded_query(self, collection: str, vector: list[float], scope: qm.FieldCondition,
                        limit: int, must: Sequence[qm.Condition],
                        exclude: Sequence[qm.Condition]) -> list[qm.ScoredPoint] | None:
        """The filtered search's answer, or None when it needs the filtered search itself.

        The embedded engine has no payload index: it evaluates every condition of a filter on
        every point of the collection in Python, so a search's cost grows with points x
        conditions (about 0.06 ms per point with the four conditions of an episode search). Here
        only the tenant condition goes to the engine, for a window of the tenant's best
        ``EMBEDDED_WINDOW`` x ``limit`` points; the other conditions are checked on those. The
        best ``limit`` of them that pass are exactly what the filtered search returns, because
        every point that passes and scores higher is in the window. Only when fewer pass, and
        the tenant has more points than the window, is the filtered search needed.
        """
        wanted, unwanted = _top_level_matches(must), _top_level_matches(exclude)
        if wanted is None or unwanted is None:
            return None
        window = limit * EMBEDDED_WINDOW
        response = self.client.query_points(collection, query=vector, limit=window,
                                            query_filter=qm.Filter(must=[scope]),
                                            with_payload=True)
        points = list(response.points)
        kept = [p for p in points
                if all(_holds(p.payload or {}, key, value) for key, value in wanted)
                and not any(_holds(p.payload or {}, key, value) for key, value in unwanted)]
        if len(kept) >= limit or len(points) < window:
            return kept[:limit]
        return None


# How many times the asked number of hits an embedded search fetches by tenant alone (above).
EMBEDDED_WINDOW = 4


def _top_level_matches(conditions: Sequence[qm.Condition]) -> list[tuple[str, Any]] | None:
    """(key, value) of each condition when all are ``MatchValue`` on a top-level key, else None."""
    pairs = []
    for c in conditions:
        if not (isinstance(c, qm.FieldCondition) and isinstance(c.match, qm.MatchValue)) \
                or "." in c.key or "[" in c.key:
            return None
        pairs.append((c.key, c.match.value))
    return pairs


def _holds(payload: dict[str, Any], key: str, wanted: Any) -> bool:
    """``MatchValue(wanted)`` on ``key`` as Qdrant evaluates it: an absent key fails, a list
    matches when an element does, and bool, int and str values never match across types."""
    value = payload.get(key)
    values = value if isinstance(value, list) else [] if value is None else [value]
    return any(type(v) is type(wanted) and v == wanted for v in values)


def _clamp(score: float) -> float:
    # Float rounding puts an identical vector at 1.0000001; callers compare against thresholds.
    return max(-1.0, min(1.0, float(score)))


def _match(key: str, value: Any) -> qm.FieldCondition:
    return qm.FieldCondition(key=key, match=qm.MatchValue(value=value))


def _require_tenant(tenant: str) -> None:
    # A blank tenant would silently widen nothing but match nothing; fail loudly instead.
    if not isinstance(tenant, str) or not tenant.strip():
        raise ValueError("a tenant is required for every memory read and write")
