"""Command-line client: ``octollm submit|status|cancel|retry|tasks`` and ``octollm apikey``.

The task commands talk HTTP to OCTOLLM_API_URL with OCTOLLM_API_KEY (or --api-url/--api-key),
like any other client. ``apikey`` writes to the database directly: it is how the first key of a
tenant comes to exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import click
import requests

TERMINAL = ("completed", "failed", "cancelled")
PRIORITIES = ("low", "medium", "high", "critical")
STATUSES = ("pending", "processing", *TERMINAL)
DEFAULT_URL = "http://127.0.0.1:8000"


class RequestFailed(click.ClickException):
    """The API answered with an error or could not be reached: one line, exit status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.ctx = click.get_current_context(silent=True)  # names the command in the error line


class Api:
    def __init__(self, url: str = DEFAULT_URL, key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"X-API-Key": key} if key else {}

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return requests.request(method, self.url + path, headers=self.headers, **kwargs)
        except requests.ConnectionError:
            raise RequestFailed(f"cannot reach the API at {self.url}") from None
        except requests.Timeout:
            raise RequestFailed(f"the API at {self.url} did not answer in time") from None
        except requests.RequestException as exc:
            raise RequestFailed(f"request to {self.url} failed: {type(exc).__name__}") from None

    def call(self, method: str, path: str, **kwargs: Any) -> dict:
        response = self._request(method, path, timeout=30, **kwargs)
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        if response.status_code >= 400 or not isinstance(body, dict):
            message = body.get("message") if isinstance(body, dict) else None
            raise RequestFailed(f"error {response.status_code} {body.get('error', '')}: "
                                f"{message or response.text[:200]}")
        return body

    def events(self, task_id: str) -> Iterator[tuple[str, dict]]:
        response = self._request("GET", f"/tasks/{task_id}/events", stream=True, timeout=(10, 60))
        with response:
            if response.status_code >= 400:
                raise RequestFailed(f"error {response.status_code}: {response.text[:200]}")
            event_type, data = "message", ""
            try:
                for line in response.iter_lines(decode_unicode=True):
                    if line.startswith("event:"):
                        event_type = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif line == "" and data:
                        yield event_type, json.loads(data)
                        event_type, data = "message", ""
            except requests.RequestException:
                raise RequestFailed(f"lost the event stream from {self.url}") from None


def _api_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--api-key", envvar="OCTOLLM_API_KEY", metavar="KEY",
                           help="API key [env OCTOLLM_API_KEY]")(command)
    return click.option("--api-url", envvar="OCTOLLM_API_URL", default=DEFAULT_URL,
                        show_default=True, help="API base URL [env OCTOLLM_API_URL]")(command)


@click.command()
@click.argument("goal")
@click.option("--context", help="context text, or @file to read it from a file")
@click.option("--criterion", "criteria", multiple=True,
              help="acceptance criterion (repeatable), e.g. 'must include: hello'")
@click.option("--priority", type=click.Choice(PRIORITIES), default="medium", show_default=True)
@click.option("--max-time", type=click.IntRange(1, 3600), help="budget.max_time_seconds")
@click.option("--wait", is_flag=True, help="show live progress until it ends")
@_api_options
def submit(goal: str, context: str | None, criteria: tuple[str, ...], priority: str,
           max_time: int | None, wait: bool, api_url: str, api_key: str | None) -> int:
    """Submit a task (and follow it with --wait)."""
    api = Api(api_url, api_key)
    context = context or ""
    if context.startswith("@"):
        try:
            with open(context[1:], encoding="utf-8") as handle:
                context = handle.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {context[1:]}: {exc.strerror}",
                                     param_hint="'--context'") from None
    body: dict[str, Any] = {"goal": goal, "context": context,
                            "acceptance_criteria": list(criteria), "priority": priority}
    if max_time:
        body["budget"] = {"max_time_seconds": max_time}
    accepted = api.call("POST", "/submit", json=body)
    task_id = accepted["task_id"]
    click.echo(f"{task_id} {accepted['message']}")
    if not wait:
        return 0
    for event_type, data in api.events(task_id):
        _progress(event_type, data)
        if event_type == "status" and data.get("status") in TERMINAL:
            break
    task = api.call("GET", f"/tasks/{task_id}")
    _print_task(task)
    return 0 if task["status"] == "completed" else 1


@click.command()
@click.argument("task_id")
@_api_options
def status(task_id: str, api_url: str, api_key: str | None) -> None:
    """Show a task, its steps and its result."""
    _print_task(Api(api_url, api_key).call("GET", f"/tasks/{task_id}"))


@click.command()
@click.argument("task_id")
@_api_options
def cancel(task_id: str, api_url: str, api_key: str | None) -> None:
    """Cancel a task."""
    answer = Api(api_url, api_key).call("POST", f"/tasks/{task_id}/cancel")
    click.echo(f"{task_id}: {answer['status']}")


@click.command()
@click.argument("task_id")
@_api_options
def retry(task_id: str, api_url: str, api_key: str | None) -> None:
    """Retry a failed task from its failed steps."""
    click.echo(Api(api_url, api_key).call("POST", f"/tasks/{task_id}/retry")["message"])


@click.command()
@click.option("--status", "wanted", type=click.Choice(STATUSES))
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@_api_options
def tasks(wanted: str | None, limit: int, api_url: str, api_key: str | None) -> None:
    """List your tasks, newest first."""
    params: dict[str, Any] = {"limit": limit, **({"status": wanted} if wanted else {})}
    for task in Api(api_url, api_key).call("GET", "/tasks", params=params)["tasks"]:
        click.echo(f"{task['task_id']}  {task['status']:<10} {task['priority']:<8} "
                   f"{task['created_at'][:19]}  {task['goal'][:60]!r}")


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
    click.echo(line)


def _print_task(task: dict) -> None:
    click.echo(f"task     {task['task_id']}\nstatus   {task['status']}")
    if task.get("error"):
        click.echo(f"error    {task['error']['code']}: {task['error']['message']}")
    for step in task.get("steps", []):
        click.echo(f"  {step['step_id']:<12} {step['arm']:<10} {step['status']:<10} "
                   f"attempts={step['attempts']} {step.get('summary') or ''}"[:120])
    result = task.get("result") or {}
    if result.get("output") is not None:
        click.echo("output:\n" + str(result["output"]))


def _scopes(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    from app.access import keys

    scopes = tuple(s.strip() for s in value.split(",") if s.strip())
    try:
        return keys.validate_scopes(scopes)
    except keys.AuthError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def apikey() -> None:
    """Create or revoke API keys (database access)."""


@apikey.command()
@click.option("--tenant", required=True)
@click.option("--scopes", default="tasks:submit,tasks:read,tasks:cancel,knowledge:write",
              show_default=True, callback=_scopes, help="comma list; at least one")
@click.option("--name", default="", help="a note on what the key is for")
def create(tenant: str, scopes: tuple[str, ...], name: str) -> None:
    """Create a key; it is printed once."""
    from app.access import keys
    from app.config import Settings
    from app.db import session_scope

    try:
        keys.validate_tenant(tenant)
    except keys.AuthError as exc:
        raise click.BadParameter(str(exc), param_hint="'--tenant'") from None
    with session_scope(Settings.from_env()) as session:
        key, row = keys.create_key(session, tenant, scopes, name)
        shown = f"tenant={row.tenant} scopes={','.join(row.scopes)} prefix={row.prefix}"
    # Printed once the row is committed: a key shown but never stored would only confuse.
    click.echo(key)
    click.echo(f"{shown} (the key is shown only this once)", err=True)


@apikey.command()
@click.argument("prefix")
def revoke(prefix: str) -> None:
    """Revoke a key by its prefix."""
    from app.access import keys
    from app.config import Settings
    from app.db import session_scope

    with session_scope(Settings.from_env()) as session:
        if not keys.revoke(session, prefix):
            raise RequestFailed(f"no active key with prefix {prefix}")
    click.echo(f"revoked {prefix}")


def register(group: click.Group) -> None:
    for command in (submit, status, cancel, retry, tasks, apikey):
        group.add_command(command)
