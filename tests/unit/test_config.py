import pytest

from app.config import ConfigError, Settings


def test_reads_prefixed_variables_and_coerces_types():
    s = Settings.from_env({"OCTOLLM_ENVIRONMENT": "production", "OCTOLLM_SECRET_KEY": "k" * 32,
                           "OCTOLLM_DB_POOL_SIZE": "12", "OCTOLLM_LOG_JSON": "false",
                           "OCTOLLM_REUSE_THRESHOLD": "0.9", "UNRELATED": "x"})
    assert (s.environment, s.db_pool_size, s.log_json, s.reuse_threshold) == (
        "production", 12, False, 0.9)


@pytest.mark.parametrize("env, variable", [
    ({"OCTOLLM_DATABASE_URL": "mysql://u@h/db"}, "OCTOLLM_DATABASE_URL"),
    ({"OCTOLLM_REDIS_URL": "http://localhost:6379"}, "OCTOLLM_REDIS_URL"),
    # RabbitMQ may be the broker, never the result backend: chords need Redis.
    ({"OCTOLLM_REDIS_URL": "amqp://g:g@localhost:5672/"}, "OCTOLLM_REDIS_URL"),
    ({"OCTOLLM_RESULT_BACKEND": "amqp://g:g@localhost:5672/"}, "OCTOLLM_RESULT_BACKEND"),
    ({"OCTOLLM_BROKER_URL": "kafka://localhost:9092"}, "OCTOLLM_BROKER_URL"),
    ({"OCTOLLM_BROKER_URL": "amqp://g:g@localhost:5672/"}, "OCTOLLM_REDIS_URL is required"),
    ({"OCTOLLM_QDRANT_URL": "ftp://q"}, "OCTOLLM_QDRANT_URL"),
    ({"OCTOLLM_ENVIRONMENT": "staging"}, "OCTOLLM_ENVIRONMENT"),
    ({"OCTOLLM_DB_POOL_SIZE": "0"}, "OCTOLLM_DB_POOL_SIZE"),
    ({"OCTOLLM_DB_POOL_SIZE": "500"}, "OCTOLLM_DB_POOL_SIZE"),
    ({"OCTOLLM_DB_POOL_SIZE": "many"}, "OCTOLLM_DB_POOL_SIZE"),
    ({"OCTOLLM_API_PORT": "70000"}, "OCTOLLM_API_PORT"),
    ({"OCTOLLM_LOG_JSON": "perhaps"}, "OCTOLLM_LOG_JSON"),
    ({"OCTOLLM_ENVIRONMENT": "production"}, "OCTOLLM_SECRET_KEY"),
    ({"OCTOLLM_ENVIRONMENT": "production", "OCTOLLM_SECRET_KEY": "s",
      "OCTOLLM_AUTH_DISABLED": "1"}, "OCTOLLM_AUTH_DISABLED"),
])
def test_invalid_values_fail_at_start_naming_the_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(env)


def test_secrets_are_masked_when_printed():
    s = Settings.from_env({
        "OCTOLLM_DATABASE_URL": "postgresql://app:hunter2pw@db:5432/octo",
        "OCTOLLM_REDIS_URL": "redis://:redispass99@cache:6379/0",
        "OCTOLLM_FLOWER_PASSWORD": "flowerpw77", "OCTOLLM_SECRET_KEY": "topsecretkey",
        "OCTOLLM_QDRANT_API_KEY": "qdrantkey55",
    })
    shown = repr(s) + str(s)
    for secret in ("hunter2pw", "redispass99", "flowerpw77", "topsecretkey", "qdrantkey55"):
        assert secret not in shown
    assert "postgresql://app:***@db:5432/octo" in shown
    assert s.database_url.endswith("hunter2pw@db:5432/octo")  # the value itself is intact


def test_broker_and_backend_default_to_redis_url():
    s = Settings.from_env({"OCTOLLM_REDIS_URL": "redis://r:6379/3"})
    assert s.effective_broker_url == s.effective_result_backend == "redis://r:6379/3"
    with pytest.raises(ConfigError, match="OCTOLLM_REDIS_URL"):
        _ = Settings.from_env({}).effective_broker_url


def test_a_rabbitmq_broker_keeps_redis_for_results_locks_and_events():
    s = Settings.from_env({"OCTOLLM_BROKER_URL": "amqp://octo:rabbitpw9@rabbit:5672/octollm",
                           "OCTOLLM_REDIS_URL": "redis://r:6379/3"})
    assert s.broker_is_amqp
    assert s.effective_broker_url == "amqp://octo:rabbitpw9@rabbit:5672/octollm"
    assert s.effective_result_backend == s.effective_redis_url == "redis://r:6379/3"
    assert "rabbitpw9" not in repr(s) and "amqp://octo:***@rabbit:5672/octollm" in repr(s)
    redis_broker = Settings.from_env({"OCTOLLM_BROKER_URL": "redis://b:6379/1",
                                      "OCTOLLM_REDIS_URL": "redis://r:6379/3"})
    assert not redis_broker.broker_is_amqp
    assert redis_broker.effective_result_backend == "redis://b:6379/1"
    assert redis_broker.effective_redis_url == "redis://r:6379/3"


PRODUCTION = {"OCTOLLM_ENVIRONMENT": "production", "OCTOLLM_SECRET_KEY": "k" * 32}


def test_production_requires_rabbitmq_credentials():
    redis = {"OCTOLLM_REDIS_URL": "redis://:s3cret@cache:6379/0"}
    with pytest.raises(ConfigError, match="OCTOLLM_BROKER_URL has no user and password"):
        Settings.from_env({**PRODUCTION, **redis, "OCTOLLM_BROKER_URL": "amqp://rabbit:5672/o"})
    url = "amqp://octollm:s3cret@rabbit:5672/octollm"
    assert Settings.from_env({**PRODUCTION, **redis, "OCTOLLM_BROKER_URL": url}).broker_is_amqp


@pytest.mark.parametrize("variable, url", [
    ("OCTOLLM_REDIS_URL", "redis://cache:6379/0"),
    ("OCTOLLM_REDIS_URL", "rediss://user@cache:6380/0"),
    ("OCTOLLM_BROKER_URL", "redis://cache:6379/1"),
    ("OCTOLLM_RESULT_BACKEND", "unix:///run/redis.sock?db=2"),
])
def test_production_refuses_a_redis_url_without_a_password(variable, url):
    with pytest.raises(ConfigError, match=f"{variable} has no password.*authenticated Redis"):
        Settings.from_env({**PRODUCTION, variable: url})


@pytest.mark.parametrize("url", [
    "redis://:s3cret@cache:6379/0", "rediss://octollm:s3cret@cache:6380/0",
    "unix:///run/redis.sock?db=2&password=s3cret",
])
def test_production_accepts_an_authenticated_redis_and_other_environments_anything(url):
    assert Settings.from_env({**PRODUCTION, "OCTOLLM_REDIS_URL": url}).redis_url == url
    assert Settings.from_env({"OCTOLLM_REDIS_URL": "redis://cache:6379/0"}).redis_url
