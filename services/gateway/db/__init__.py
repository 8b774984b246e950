"""The gateway's database: ORM records (`models`), engines/sessions and migrations (`session`)."""

from services.gateway.db.models import Base, Run, Step, StepMetric, TaskRecord, WeightVersion
from services.gateway.db.session import make_engine, make_sessionmaker, migrate

__all__ = [
    "Base",
    "Run",
    "Step",
    "StepMetric",
    "TaskRecord",
    "WeightVersion",
    "make_engine",
    "make_sessionmaker",
    "migrate",
]
