"""Prometheus metrics of the trainer (module-level: one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

VERSION = Gauge("azr_trainer_version", "Newest saved weight version")
BACKLOG = Gauge("azr_trainer_backlog", "Reward batches waiting (undelivered + pending)")
BATCHES = Counter("azr_trainer_batches_total", "Reward batches handled", ["outcome"])
STEP_SECONDS = Histogram(
    "azr_trainer_step_seconds",
    "Wall time of one update (forward, backward, optimizer)",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
SAVE_SECONDS = Histogram(
    "azr_trainer_save_seconds",
    "Wall time to write one version",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30),
)
REDIS_MEMORY = Gauge(
    "azr_trainer_redis_memory_fraction", "Redis used_memory / maxmemory (0 when unlimited)"
)
STEP = Gauge("azr_trainer_step_metric", "Per-step scalar of the last update", ["name"])
GROUP = Gauge(
    "azr_trainer_group_metric", "Per task x role statistics of the last batch", ["group", "name"]
)

# The step scalars exported as azr_trainer_step_metric{name=...}.
STEP_NAMES = (
    "loss",
    "pg_loss",
    "entropy",
    "grad_norm",
    "clip_fraction",
    "mismatch_abs",
    "mismatch_kl",
    "tis_truncated_fraction",
    "tokens_per_s",
    "step_time_s",
    "rows",
    "forward_tokens",
    "reward_mean",
    "staleness",
)


def record_step(metrics: dict[str, float], groups: dict[str, dict[str, float]]) -> None:
    for name in STEP_NAMES:
        if name in metrics:
            STEP.labels(name=name).set(metrics[name])
    for group, stats in groups.items():
        for name, value in stats.items():
            GROUP.labels(group=group, name=name).set(value)
    STEP_SECONDS.observe(metrics.get("step_time_s", 0.0))
