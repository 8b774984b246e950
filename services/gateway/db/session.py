"""Engines, sessions and start-up migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

PACKAGE_DIR = Path(__file__).resolve().parent.parent
ALEMBIC_INI = PACKAGE_DIR / "alembic.ini"
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine with the settings this service relies on.

    SQLite: the file's folder is created, foreign keys are enforced, WAL lets the API read while
    the loop writes, and a busy timeout makes concurrent writers wait instead of failing.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, "timeout": 30}
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if parsed.database and parsed.database != ":memory:":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def alembic_config() -> Config:
    cfg = Config(str(ALEMBIC_INI))
    # Absolute, so it works whatever the working directory is.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """`alembic upgrade head` on this engine (idempotent; run at every start-up)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: records returned by the store stay readable after its session closes.
    return sessionmaker(bind=engine, expire_on_commit=False)
