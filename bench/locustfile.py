"""Locust users for bench/api.py: one endpoint per run, no think time (closed loop).

BENCH_ENDPOINT=submit|read selects the endpoint; BENCH_API_KEY is sent as X-API-Key (the bare app
ignores it); BENCH_TASK_IDS is a comma-separated list of task ids the read users cycle through.
"""

import itertools
import os

from locust import FastHttpUser, task

ENDPOINT = os.environ.get("BENCH_ENDPOINT", "submit")
HEADERS = {"X-API-Key": os.environ.get("BENCH_API_KEY", ""), "Content-Type": "application/json"}
IDS = itertools.cycle([i for i in os.environ.get("BENCH_TASK_IDS", "").split(",") if i] or ["x"])
BODY = '{"goal": "Run `echo hi`"}'


class ApiUser(FastHttpUser):
    @task
    def call(self):
        if ENDPOINT == "submit":
            self.client.post("/submit", data=BODY, headers=HEADERS, name="POST /submit")
        else:
            self.client.get(f"/tasks/{next(IDS)}", headers=HEADERS, name="GET /tasks/<id>")
