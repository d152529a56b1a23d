"""The API's per-client token bucket: 429 with Retry-After, shared by every API process."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from api import create_app
from app.access.ratelimit import PREFIX
from tests.support.apps import ERROR_KEYS, gunicorn_api, make_key

pytestmark = pytest.mark.integration


def test_burst_then_429_with_retry_after_per_key(runtime):
    settings = runtime.settings.replace(auth_disabled=False, rate_limit_burst=3,
                                        rate_limit_per_second=0.5)
    app = create_app(settings)
    a, b = make_key(settings, "rl-a"), make_key(settings, "rl-b")
    c = app.test_client()
    codes = [c.get("/tasks", headers={"X-API-Key": a}).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = c.get("/tasks", headers={"X-API-Key": a})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.get_json()["error"] == "RATE_LIMITED"
    assert c.get("/tasks", headers={"X-API-Key": b}).status_code == 200  # its own bucket
    assert c.get("/health").status_code == 200  # probes are never limited


def test_anonymous_clients_get_one_bucket_per_address(runtime):
    """With authentication disabled every caller is anonymous: the address is the client."""
    settings = runtime.settings.replace(auth_disabled=True, rate_limit_burst=2,
                                        rate_limit_per_second=0.05)
    c = create_app(settings).test_client()

    def get(addr: str):
        return c.get("/tasks", environ_base={"REMOTE_ADDR": addr})

    first = [get("198.51.100.7").status_code for _ in range(2)]
    limited = get("198.51.100.7")
    other = [get("198.51.100.8").status_code for _ in range(2)]
    assert first == [200, 200] and other == [200, 200]  # the second address kept its burst
    assert limited.status_code == 429 and limited.get_json()["error"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["Retry-After"]) <= 20  # one token at 0.05/s
    assert limited.get_json()["details"]["retry_after"] == int(limited.headers["Retry-After"])
    assert get("198.51.100.8").status_code == 429  # and then spent it, on its own
    assert runtime.redis.exists(f"{PREFIX}ip:198.51.100.7", f"{PREFIX}ip:198.51.100.8") == 2


def test_two_api_processes_share_one_bucket(runtime, test_env, tmp_path):
    """Two gunicorn API processes spend from the same Redis bucket."""
    settings = runtime.settings.replace(auth_disabled=False)
    key = make_key(settings, "rl-shared")
    env = {**test_env, "OCTOLLM_AUTH_DISABLED": "false", "OCTOLLM_RATE_LIMIT_BURST": "6",
           "OCTOLLM_RATE_LIMIT_PER_SECOND": "0.01"}
    with gunicorn_api(env, tmp_path / "a.log") as a, gunicorn_api(env, tmp_path / "b.log") as b:
        urls = [a, b]
        codes = [requests.get(f"{urls[i % 2]}/tasks", headers={"X-API-Key": key},
                              timeout=10).status_code for i in range(8)]
    assert codes[:6] == [200] * 6 and codes[6:] == [429, 429]


def test_a_flood_of_wrong_keys_is_answered_429_and_a_valid_key_still_works(runtime, test_env,
                                                                          tmp_path):
    """80 parallel tries with wrong keys from one address against a real gunicorn API: past the
    failure bucket (default 20) they get 429 with Retry-After; in the same second a valid key
    from the same address is served, and its own bucket was never spent by the flood."""
    settings = runtime.settings.replace(auth_disabled=False)
    key = make_key(settings, "rl-flood")
    runtime.redis.delete(f"{PREFIX}auth-failures:ip:127.0.0.1")
    env = {**test_env, "OCTOLLM_AUTH_DISABLED": "false", "OCTOLLM_RATE_LIMIT_PER_SECOND": "10"}
    env.pop("OCTOLLM_AUTH_FAILURE_PER_SECOND")  # the defaults, as deployed
    with gunicorn_api(env, tmp_path / "api.log", workers=2) as url:
        def wrong(i: int) -> requests.Response:
            guess = f"octo_guess{i:05d}_" + "x" * 30
            return requests.get(f"{url}/tasks", headers={"X-API-Key": guess}, timeout=30)

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(wrong, range(80)))
        valid = requests.get(f"{url}/tasks", headers={"X-API-Key": key}, timeout=10)
        bare = requests.get(f"{url}/tasks", timeout=10)  # no key at all is a failure too
    codes = [a.status_code for a in answers]
    # Every guess still costs a key lookup (a valid key must get through), so on an overloaded
    # machine a few may time out on the database (503, documented); none is ever served.
    assert {401, 429} <= set(codes) <= {401, 429, 503}, codes
    # 20 in the burst, plus what refills (0.5/s) while the flood lasts.
    assert codes.count(401) <= 30 and codes.count(429) >= 80 - 30 - codes.count(503), codes
    limited = next(a for a in answers if a.status_code == 429)
    body = limited.json()
    assert body["error"] == "RATE_LIMITED" and set(body) == ERROR_KEYS
    assert int(limited.headers["Retry-After"]) >= 1
    assert body["details"]["retry_after"] == int(limited.headers["Retry-After"])
    assert valid.status_code == 200, valid.text
    assert bare.status_code == 429
    prefix = key.split("_")[1]
    bucket = runtime.redis.hgetall(f"{PREFIX}client:{prefix}")
    assert float(bucket[b"tokens"]) >= settings.rate_limit_burst - 2  # spent once, by itself


def test_failure_buckets_are_per_address_and_off_when_authentication_is(runtime):
    settings = runtime.settings.replace(auth_disabled=False, auth_failure_burst=2,
                                        auth_failure_per_second=0.05)
    c = create_app(settings).test_client()
    runtime.redis.delete(*(f"{PREFIX}auth-failures:ip:198.51.100.{n}" for n in (20, 21)))

    def wrong(addr: str) -> int:
        return c.get("/tasks", headers={"X-API-Key": "octo_nope_nope"},
                     environ_base={"REMOTE_ADDR": addr}).status_code

    assert [wrong("198.51.100.20") for _ in range(3)] == [401, 401, 429]
    assert wrong("198.51.100.21") == 401  # another address keeps its own bucket
    anonymous = create_app(settings.replace(auth_disabled=True)).test_client()
    assert anonymous.get("/tasks", environ_base={"REMOTE_ADDR": "198.51.100.20"}).status_code == 200


def test_behind_a_proxy_the_forwarded_address_owns_the_failure_bucket(runtime):
    settings = runtime.settings.replace(auth_disabled=False, auth_failure_burst=1,
                                        auth_failure_per_second=0.05, proxy_hops=1)
    c = create_app(settings).test_client()
    runtime.redis.delete(*(f"{PREFIX}auth-failures:ip:203.0.113.{n}" for n in (30, 31)))

    def wrong(client_addr: str) -> int:
        # The proxy (10.0.0.5) appends the address it saw; a client's own entry comes first.
        return c.get("/tasks", headers={"X-API-Key": "octo_nope_nope",
                                        "X-Forwarded-For": f"198.51.100.99, {client_addr}"},
                     environ_base={"REMOTE_ADDR": "10.0.0.5"}).status_code

    assert [wrong("203.0.113.30"), wrong("203.0.113.30")] == [401, 429]
    assert wrong("203.0.113.31") == 401
    assert runtime.redis.exists(f"{PREFIX}auth-failures:ip:198.51.100.99") == 0
