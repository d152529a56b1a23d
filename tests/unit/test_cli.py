"""The ``octollm`` command line: bad values are refused before anything runs, every error is one
line on stderr with a non-zero exit, and every worker process gets its own node name."""

from __future__ import annotations

import os
import re
import socket

import pytest

from workers import cli, processes


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Server commands set an owner-only umask, and every command adopts the services of an
    `octollm run` found under var/: neither may leak out of these in-process runs."""
    monkeypatch.setenv("OCTOLLM_VAR_DIR", str(tmp_path / "var"))
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def execs(monkeypatch) -> list[list[str]]:
    """The command lines ``octollm`` would exec, instead of exec'ing them."""
    seen: list[list[str]] = []
    monkeypatch.setattr(cli, "_exec", seen.append)
    return seen


@pytest.mark.parametrize(("argv", "option"), [
    (["submit", "Run `echo x`", "--max-time", "0"], "--max-time"),
    (["submit", "Run `echo x`", "--max-time", "3601"], "--max-time"),
    (["submit", "Run `echo x`", "--priority", "urgent"], "--priority"),
    (["worker", "--queue", "arm.coder", "--autoscale", "1,5"], "--autoscale"),
    (["worker", "--queue", "arm.coder", "--autoscale", "many"], "--autoscale"),
    (["worker", "--queue", "arm.coder", "--autoscale", "0,0"], "--autoscale"),
    (["worker", "--queue", "arm.coder", "--concurrency", "0"], "--concurrency"),
    (["worker", "--queue", "arm.nothing"], "--queue"),
    (["worker", "--queue", "arm.coder", "--loglevel", "chatty"], "--loglevel"),
    (["api", "--workers", "0"], "--workers"),
    (["tasks", "--limit", "0"], "--limit"),
    (["apikey", "create", "--tenant", "acme", "--scopes", ""], "--scopes"),
    (["apikey", "create", "--tenant", "acme", "--scopes", " , "], "--scopes"),
    (["apikey", "create", "--tenant", "acme", "--scopes", "tasks:everything"], "--scopes"),
    (["apikey", "create", "--tenant", "not a tenant!"], "--tenant"),
])
def test_invalid_values_are_refused_in_one_line_before_anything_runs(capsys, execs, argv, option):
    code, out, err = run(capsys, *argv)

    assert code == 2
    line = one_line(err)
    assert line.startswith(f"octollm {argv[0]}") and option in line, line
    assert out == "" and execs == []


def test_a_key_needs_at_least_one_scope(capsys):
    code, _, err = run(capsys, "apikey", "create", "--tenant", "acme", "--scopes", "")
    assert code == 2 and "at least one scope" in one_line(err)


def test_concurrency_and_autoscale_exclude_each_other(capsys, execs):
    code, _, err = run(capsys, "worker", "--queue", "arm.coder", "--concurrency", "2",
                       "--autoscale", "4,1")
    assert code == 2 and "exclude each other" in one_line(err) and execs == []


def test_an_unknown_command_is_one_line(capsys):
    code, _, err = run(capsys, "deploy")
    assert code == 2 and "No such command 'deploy'" in one_line(err)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("argv", [["submit", "Run `echo x`", "--wait"], ["status", "t-1"],
                                  ["tasks"], ["cancel", "t-1"], ["retry", "t-1"]])
def test_an_unreachable_api_is_one_line_not_a_traceback(capsys, argv):
    url = f"http://127.0.0.1:{closed_port()}"
    code, out, err = run(capsys, *argv, "--api-url", url)

    assert code == 1 and out == ""
    assert one_line(err) == f"octollm {argv[0]}: cannot reach the API at {url}"


def test_the_api_url_and_key_come_from_the_environment(capsys, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("OCTOLLM_API_URL", url)
    code, _, err = run(capsys, "tasks")
    assert code == 1 and url in one_line(err)


def test_an_unreachable_database_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("OCTOLLM_DATABASE_URL",
                       f"postgresql://octo:secret-pw@127.0.0.1:{closed_port()}/octollm")
    code, _, err = run(capsys, "apikey", "revoke", "octo_abc")
    line = one_line(err)
    assert code == 1 and line.startswith("octollm: cannot reach the database")
    assert "secret-pw" not in line


def test_a_bad_environment_is_one_line_naming_the_variable(capsys, monkeypatch, execs):
    monkeypatch.setenv("OCTOLLM_API_PORT", "0")
    code, _, err = run(capsys, "api")
    assert code == 2 and execs == []
    assert one_line(err).startswith("octollm: configuration error: OCTOLLM_API_PORT")


def test_flower_without_a_password_is_refused(capsys, monkeypatch):
    monkeypatch.delenv("OCTOLLM_FLOWER_PASSWORD", raising=False)
    code, _, err = run(capsys, "flower")
    assert code == 2 and "OCTOLLM_FLOWER_PASSWORD is required" in one_line(err)


def test_help_exits_zero(capsys):
    code, out, _ = run(capsys, "worker", "--help")
    assert code == 0 and "--name" in out and "--autoscale" in out


# -- worker node names ---------------------------------------------------------------------------

def node_of(argv: list[str]) -> str:
    return argv[argv.index("-n") + 1]


def test_each_worker_process_gets_its_own_node_name_by_default(capsys, execs):
    for _ in range(2):
        assert run(capsys, "worker", "--queue", "arm.coder")[0] == 0
    first, second = (node_of(argv) for argv in execs)

    assert first != second
    assert re.fullmatch(r"arm\.coder-[0-9a-f]{6}@%h", first), first


@pytest.mark.parametrize(("given", "node"), [("coder-a", "coder-a@%h"),
                                              ("coder-b@box1", "coder-b@box1")])
def test_name_sets_the_node_name(capsys, execs, given, node):
    assert run(capsys, "worker", "--queue", "arm.coder", "--name", given)[0] == 0
    assert node_of(execs[0]) == node


def test_valid_scaling_options_reach_the_celery_command_line(capsys, execs):
    run(capsys, "worker", "--queue", "arm.coder", "--autoscale", "8,1", "--loglevel", "debug")
    run(capsys, "worker", "--queue", "arm.coder", "--concurrency", "3")
    scaled, fixed = execs
    assert scaled[scaled.index("--autoscale") + 1] == "8,1"
    assert scaled[scaled.index("--loglevel") + 1] == "DEBUG"
    assert fixed[fixed.index("--concurrency") + 1] == "3"


def test_node_names_are_unique_per_call_and_keep_a_given_host():
    names = {processes.node_name("reflex") for _ in range(50)}
    assert len(names) == 50
    assert processes.node_name("reflex", "reflex@%h") == "reflex@%h"
