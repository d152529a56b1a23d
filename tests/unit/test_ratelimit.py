"""Token bucket in Redis: burst, refill, Retry-After, and atomic across processes."""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from app.access.ratelimit import Decision, RateLimiter, client_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(redis_url):
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


def key() -> str:
    return f"test-{uuid.uuid4().hex}"


def test_burst_is_allowed_then_denied_with_retry_after(client):
    limiter = RateLimiter(client, burst=3, per_second=0.5)
    k = key()

    decisions = [limiter.hit(k) for _ in range(4)]

    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[0].retry_after == 0
    assert 1.5 < decisions[3].retry_after <= 2.0  # one token every 2 s
    assert decisions[3].retry_after_header == "2"


def test_tokens_refill_at_the_configured_rate(client):
    limiter = RateLimiter(client, burst=2, per_second=20)
    k = key()
    assert [limiter.hit(k).allowed for _ in range(3)] == [True, True, False]

    time.sleep(0.12)  # 2.4 tokens' worth, capped at the burst of 2

    assert [limiter.hit(k).allowed for _ in range(3)] == [True, True, False]


def test_each_client_has_its_own_bucket(client):
    limiter = RateLimiter(client, burst=1, per_second=0.01)
    a, b = key(), key()
    assert limiter.hit(a).allowed and limiter.hit(b).allowed
    assert not limiter.hit(a).allowed


def test_idle_buckets_expire(client):
    limiter = RateLimiter(client, burst=5, per_second=10)
    k = key()
    limiter.hit(k)
    ttl_ms = client.pttl(limiter.prefix + k)
    assert 0 < ttl_ms <= 1500  # full again after 0.5 s; kept 1 s more at most


def test_client_key_prefers_the_client_and_falls_back_to_the_address():
    assert client_key("c-42", "10.0.0.1") == "client:c-42"
    assert client_key(None, "10.0.0.1") == "ip:10.0.0.1"
    assert client_key("", None) == "ip:unknown"


@pytest.mark.parametrize("burst, rate", [(0, 1.0), (5, 0.0), (5, -1.0)])
def test_invalid_configuration_is_refused(client, burst, rate):
    with pytest.raises(ValueError):
        RateLimiter(client, burst=burst, per_second=rate)


_WORKER = """
import json, sys, time, redis
from app.access.ratelimit import RateLimiter
url, k, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
limiter = RateLimiter(redis.Redis.from_url(url), burst=300, per_second=0.001)
while time.time() < start:
    time.sleep(0.001)
print(json.dumps(sum(limiter.hit(k).allowed for _ in range(n))))
"""


def test_two_processes_share_one_bucket_and_never_overspend_it(redis_url):
    k, hits = key(), 600
    start = time.time() + 2.0  # both begin together, so their requests interleave
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, redis_url, k, str(hits), str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              cwd=ROOT)
             for _ in range(2)]
    results = [p.communicate(timeout=60) for p in procs]

    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    allowed = [json.loads(out) for out, _ in results]
    assert sum(allowed) == 300  # the burst, exactly: no token spent twice, none lost
    assert all(0 < a < 300 for a in allowed)  # both processes really competed for it


def test_decision_is_a_plain_value():
    assert Decision(True, 0.0, 4) == Decision(allowed=True, retry_after=0.0, remaining=4)
