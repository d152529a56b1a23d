"""Command-line client: ``octollm submit|status|cancel|retry|tasks`` and ``octollm apikey``.

The task commands talk HTTP to OCTOLLM_API_URL with OCTOLLM_API_KEY, like any other client.
``apikey`` writes to the database directly: it is how the first key of a tenant comes to exist.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator

import requests

COMMANDS = ("submit", "status", "cancel", "retry", "tasks", "apikey")
TERMINAL = ("completed", "failed", "cancelled")


def add_commands(sub) -> None:
    submit = sub.add_parser("submit", help="submit a task (and follow it with --wait)")
    submit.add_argument("goal")
    submit.add_argument("--context", help="context text, or @file to read it from a file")
    submit.add_argument("--criterion", action="append", default=[], dest="criteria",
                        help="acceptance criterion (repeatable), e.g. 'must include: hello'")
    submit.add_argument("--priority", choices=["low", "medium", "high", "critical"],
                        default="medium")
    submit.add_argument("--max-time", type=int, help="budget.max_time_seconds")
    submit.add_argument("--wait", action="store_true", help="show live progress until it ends")
    for name in ("status", "cancel", "retry"):
        cmd = sub.add_parser(name, help=f"{name} a task")
        cmd.add_argument("task_id")
    tasks = sub.add_parser("tasks", help="list your tasks, newest first")
    tasks.add_argument("--status")
    tasks.add_argument("--limit", type=int, default=20)
    apikey = sub.add_parser("apikey", help="create or revoke API keys (database access)")
    keys = apikey.add_subparsers(dest="apikey_command", required=True)
    create = keys.add_parser("create", help="create a key; it is printed once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scopes", default="tasks:submit,tasks:read,tasks:cancel,knowledge:write")
    create.add_argument("--name", default="")
    revoke = keys.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")


class Api:
    def __init__(self, url: str | None = None, key: str | None = None) -> None:
        self.url = (url or os.environ.get("OCTOLLM_API_URL") or "http://127.0.0.1:8000").rstrip("/")
        key = key or os.environ.get("OCTOLLM_API_KEY")
        self.headers = {"X-API-Key": key} if key else {}

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = requests.request(method, self.url + path, headers=self.headers, timeout=30,
                                    **kwargs)
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            raise SystemExit(f"error {response.status_code} {body.get('error', '')}: "
                             f"{body.get('message', response.text)}")
        return body

    def events(self, task_id: str) -> Iterator[tuple[str, dict]]:
        with requests.get(f"{self.url}/tasks/{task_id}/events", headers=self.headers,
                          stream=True, timeout=(10, 60)) as response:
            if response.status_code >= 400:
                raise SystemExit(f"error {response.status_code}: {response.text}")
            event_type, data = "message", ""
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("event:"):
                    event_type = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line == "" and data:
                    yield event_type, json.loads(data)
                    event_type, data = "message", ""


def run(args) -> int:
    if args.command == "apikey":
        return _apikey(args)
    api = Api()
    if args.command == "submit":
        return _submit(api, args)
    if args.command == "status":
        _print_task(api.call("GET", f"/tasks/{args.task_id}"))
        return 0
    if args.command == "cancel":
        print(f"{args.task_id}: {api.call('POST', f'/tasks/{args.task_id}/cancel')['status']}")
        return 0
    if args.command == "retry":
        print(api.call("POST", f"/tasks/{args.task_id}/retry")["message"])
        return 0
    params = {"limit": args.limit, **({"status": args.status} if args.status else {})}
    page = api.call("GET", "/tasks", params=params)
    for task in page["tasks"]:
        print(f"{task['task_id']}  {task['status']:<10} {task['priority']:<8} "
              f"{task['created_at'][:19]}  {task['goal'][:60]!r}")
    return 0


def _submit(api: Api, args) -> int:
    context = args.context or ""
    if context.startswith("@"):
        with open(context[1:], encoding="utf-8") as handle:
            context = handle.read()
    body = {"goal": args.goal, "context": context, "acceptance_criteria": args.criteria,
            "priority": args.priority}
    if args.max_time:
        body["budget"] = {"max_time_seconds": args.max_time}
    accepted = api.call("POST", "/submit", json=body)
    task_id = accepted["task_id"]
    print(f"{task_id} {accepted['message']}", flush=True)
    if not args.wait:
        return 0
    for event_type, data in api.events(task_id):
        _progress(event_type, data)
        if event_type == "status" and data.get("status") in TERMINAL:
            break
    task = api.call("GET", f"/tasks/{task_id}")
    _print_task(task)
    return 0 if task["status"] == "completed" else 1


def _progress(event_type: str, data: dict) -> None:
    if event_type == "snapshot":
        line = f"status {data['status']}"
    elif event_type == "status":
        code = f" ({data['error_code']})" if data.get("error_code") else ""
        line = f"status {data.get('status')}{code}"
    elif event_type == "plan":
        steps = " -> ".join(data.get("steps", []))
        line = f"plan ({data.get('source')}, {data.get('task_kind')}): {steps}"
    elif event_type == "step":
        line = f"  step {data.get('step_id')} [{data.get('arm')}] {data.get('status')}"
        if data.get("summary"):
            line += f": {data['summary'][:80]}"
    else:
        return
    print(line, flush=True)


def _print_task(task: dict) -> None:
    print(f"task     {task['task_id']}\nstatus   {task['status']}")
    if task.get("error"):
        print(f"error    {task['error']['code']}: {task['error']['message']}")
    for step in task.get("steps", []):
        print(f"  {step['step_id']:<12} {step['arm']:<10} {step['status']:<10} "
              f"attempts={step['attempts']} {step.get('summary') or ''}"[:120])
    result = task.get("result") or {}
    if result.get("output") is not None:
        print("output:\n" + str(result["output"]))


def _apikey(args) -> int:
    from app.access import keys
    from app.config import Settings
    from app.db import session_scope

    settings = Settings.from_env()
    with session_scope(settings) as session:
        if args.apikey_command == "create":
            scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
            try:
                key, row = keys.create_key(session, args.tenant, scopes, args.name)
            except keys.AuthError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(key)
            print(f"tenant={row.tenant} scopes={','.join(row.scopes)} prefix={row.prefix} "
                  "(the key is shown only this once)", file=sys.stderr)
            return 0
        if not keys.revoke(session, args.prefix):
            print(f"no active key with prefix {args.prefix}", file=sys.stderr)
            return 1
        print(f"revoked {args.prefix}")
        return 0


def parse_args(argv: list[str]) -> argparse.Namespace:  # for tests
    parser = argparse.ArgumentParser(prog="octollm")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)
