"""Owner-only files and the services file `octollm run` leaves for the other commands."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
import redis

from workers import embedded


def _mode(path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_owner_only_fixes_up_an_existing_readable_folder(tmp_path):
    var = tmp_path / "var"
    (var / "qdrant" / "collection").mkdir(parents=True)
    for folder in (var, var / "qdrant", var / "qdrant" / "collection"):
        folder.chmod(0o755)
    data = var / "qdrant" / "collection" / "points.bin"
    data.write_text("tenant data")
    data.chmod(0o644)
    tool = var / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    (var / "link").symlink_to("/etc/hostname")

    embedded.owner_only(var)

    assert [_mode(p) for p in (var, var / "qdrant", var / "qdrant" / "collection")] == [0o700] * 3
    assert (_mode(data), _mode(tool)) == (0o600, 0o700)
    assert _mode(Path("/etc/hostname")) & 0o044  # the link's target untouched


def test_write_secret_is_0600_even_over_a_readable_file(tmp_path):
    path = tmp_path / "secret"
    path.write_text("old")
    path.chmod(0o644)
    embedded.write_secret(path, "new")
    assert (path.read_text(), _mode(path)) == ("new", 0o600)


def test_embedded_redis_requires_its_password_and_keeps_it_across_restarts(tmp_path):
    first = embedded.start_redis(tmp_path / "redis")
    try:
        port = int(first.url.rsplit(":", 1)[1].split("/")[0])
        with redis.Redis(port=port) as anonymous, pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with redis.Redis.from_url(first.url) as client:
            assert client.ping()
        assert first.password and first.password not in " ".join(first.process.args)
    finally:
        first.stop()
    second = embedded.start_redis(tmp_path / "redis", port=port)
    try:
        assert second.url == first.url  # generated once, kept under the data folder
        with redis.Redis.from_url(second.url) as client:
            assert client.ping()
    finally:
        second.stop()
    for name in ("password", "redis.conf", "redis.log"):
        assert _mode(tmp_path / "redis" / name) == 0o600, name
    assert _mode(tmp_path / "redis") == 0o700


def test_services_of_a_running_stack_fill_in_only_what_the_environment_does_not_name(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    # A live process stands in for `octollm run`: the file names its pid.
    stack = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = var / embedded.SERVICES_FILE
        embedded.write_secret(path, "\n".join([
            f"OCTOLLM_RUN_PID={stack.pid}",
            "OCTOLLM_DATABASE_URL=postgresql+psycopg2://postgres@/postgres?host=/x",
            "OCTOLLM_REDIS_URL=redis://:pw@127.0.0.1:6390/0",
            "OCTOLLM_QDRANT_PATH=/x/var/qdrant", "OCTOLLM_API_URL=http://127.0.0.1:8000",
            "UNRELATED=1", ""]))
        env = {"OCTOLLM_BROKER_URL": "redis://elsewhere:6379/0"}
        adopted = embedded.adopt_services(env, var)
        assert sorted(adopted) == ["OCTOLLM_API_URL", "OCTOLLM_DATABASE_URL",
                                   "OCTOLLM_QDRANT_PATH"]
        assert "OCTOLLM_REDIS_URL" not in env and "UNRELATED" not in env  # a broker of its own
        assert embedded.running_stack(var) == stack.pid
    finally:
        stack.kill()
        stack.wait()
    # A run that was killed leaves its file behind: its services are gone, nothing is adopted.
    assert embedded.adopt_services({}, var) == [] and embedded.running_stack(var) is None


def test_write_services_records_this_process_and_only_service_variables(tmp_path):
    path = embedded.write_services(tmp_path, {"OCTOLLM_REDIS_URL": "redis://:pw@h:1/0",
                                              "HOME": "/root", "OCTOLLM_SECRET_KEY": "x"})
    text = path.read_text()
    assert f"OCTOLLM_RUN_PID={os.getpid()}" in text
    assert "OCTOLLM_REDIS_URL=redis://:pw@h:1/0" in text
    assert "HOME" not in text and "SECRET_KEY" not in text and _mode(path) == 0o600


def test_a_postgres_socket_outside_the_data_folder_is_owner_only_too(tmp_path):
    """A data path too long for a Unix socket: pgserver puts the socket in a runtime folder it
    makes 0777, with trust authentication; nobody else may reach it after the start."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    url, server = embedded.start_postgres(deep / "pg")
    try:
        socket_dir = server.get_postmaster_info().socket_dir
        assert (deep / "pg").resolve() not in (socket_dir, *socket_dir.parents), socket_dir
        assert _mode(socket_dir) & 0o007 == 0 and _mode(socket_dir) & 0o070 in (0, 0o010)
        sockets = [p for p in socket_dir.iterdir() if p.name.startswith(".s.PGSQL.")]
        assert sockets and all(_mode(p) & 0o077 == 0 for p in sockets), sockets
        with psycopg2.connect(embedded.with_database(url, "postgres", driver=False)) as conn:
            assert conn.cursor() is not None  # and PostgreSQL still answers us
    finally:
        server.cleanup()
