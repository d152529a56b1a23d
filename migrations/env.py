"""Alembic environment: the URL comes from the caller's config or from OCTOLLM_DATABASE_URL."""

from alembic import context
from sqlalchemy import create_engine, pool

from app.config import Settings
from app.db import driver_url
from app.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return driver_url(config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url)


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
