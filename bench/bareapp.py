"""The API baseline: a bare Flask app whose endpoints do the least the real ones must.

    gunicorn bench.bareapp:app        (served by bench/api.py with the same settings as ours)

``POST /submit`` reads the JSON body and enqueues one Celery task (the task our API's first
message runs, ``octollm.reflex.screen``: same queue, same Celery configuration and broker, without
the chain our message carries) and answers 202, with no validation, authentication, database
write or reflex gate.
``GET /tasks/<id>`` reads the task's row (status and timestamps) with one SQL statement on a
pooled connection and answers it as JSON: what any "read a row by id" endpoint costs.
"""

from __future__ import annotations

import uuid

from celery import Celery
from flask import Flask, jsonify, request
from sqlalchemy import create_engine, text

import celeryconfig
from app.config import Settings
from app.db import driver_url


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    producer = Celery("bench-bare", set_as_current=False)
    producer.conf.update(celeryconfig.from_settings(settings))  # the API's result backend too
    engine = create_engine(driver_url(settings.database_url), pool_size=settings.db_pool_size,
                           max_overflow=settings.db_max_overflow)
    read = text("SELECT id, status, created_at, finished_at FROM tasks WHERE id = :id")
    app = Flask("bench-bare")

    @app.post("/submit")
    def submit():
        request.get_json()  # parsed, as any JSON endpoint does
        task_id = str(uuid.uuid4())
        producer.send_task("octollm.reflex.screen", args=(task_id,),
                           priority=6)  # "medium", as our API sends a default task
        return jsonify({"task_id": task_id, "status": "pending", "message": "task accepted"}), 202

    @app.get("/tasks/<task_id>")
    def task(task_id: str):
        with engine.connect() as conn:
            row = conn.execute(read, {"id": task_id}).first()
        if row is None:
            return jsonify({"error": "NOT_FOUND"}), 404
        return jsonify({"task_id": str(row.id), "status": str(row.status),
                        "created_at": row.created_at.isoformat(),
                        "finished_at": row.finished_at.isoformat() if row.finished_at else None})

    return app


def __getattr__(name: str):
    # `gunicorn bench.bareapp:app` builds the app on first access, from the environment.
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
