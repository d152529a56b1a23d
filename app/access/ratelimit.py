"""A token bucket per client in Redis, shared by every API process.

Each client key holds ``tokens`` and the time they were counted. A request refills the bucket
for the time elapsed (``per_second`` tokens a second, at most ``burst``) and takes one token.
Read, refill and take happen in one Lua script: Redis runs a script to completion before any
other command, so two API processes can never both spend the last token (a GET-then-SET from
Python could). The clock is Redis's own (TIME), so API hosts with skewed clocks agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis import Redis

PREFIX = "octollm:ratelimit:"

_BUCKET = """
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
elseif now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
-- An idle bucket is full again after burst/rate seconds; keeping it longer is useless.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(retry), tostring(tokens)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until one token is available; 0 when allowed
    remaining: int  # whole tokens left after this request

    @property
    def retry_after_header(self) -> str:
        """Retry-After takes whole seconds; round up so a client retrying on time succeeds."""
        return str(max(1, math.ceil(self.retry_after)))


def client_key(client_id: str | None, remote_addr: str | None) -> str:
    """The bucket of an authenticated client (the API passes its key prefix), else of the
    address it calls from (anonymous use, authentication disabled)."""
    if client_id:
        return f"client:{client_id}"
    return f"ip:{remote_addr or 'unknown'}"


def auth_failure_key(remote_addr: str | None) -> str:
    """The bucket an address spends from on each failed authentication only; requests with a
    valid key never touch it (nor does this bucket touch theirs)."""
    return f"auth-failures:ip:{remote_addr or 'unknown'}"


class RateLimiter:
    def __init__(self, redis_client: Redis, burst: int, per_second: float, *,
                 prefix: str = PREFIX) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        if not per_second > 0:
            raise ValueError(f"per_second must be positive, got {per_second}")
        self.burst = int(burst)
        self.per_second = float(per_second)
        self.prefix = prefix
        self._script = redis_client.register_script(_BUCKET)

    def hit(self, key: str, cost: int = 1) -> Decision:
        allowed, retry, tokens = self._script(keys=[self.prefix + key],
                                              args=[self.burst, repr(self.per_second), cost])
        return Decision(bool(int(allowed)), float(retry), int(math.floor(float(tokens))))
