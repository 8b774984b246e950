"""Alembic environment: uses the connection handed over by `migrate()`, else builds an engine from
`-x url=...` or the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from services.gateway.db.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from azr.settings import get_settings
    from services.gateway.db.session import make_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or get_settings().sqlalchemy_url
    engine = make_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) mode is not supported; run against a database")
run_migrations_online()
