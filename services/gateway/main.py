"""`azr serve gateway`: the public API with the loop runner attached as its run control."""

from __future__ import annotations

import logging
from typing import Any

import redis as redis_lib

from azr.common.redis_server import resolve_redis_url
from azr.loop.orchestrator import LoopPorts
from azr.settings import LoopSettings, Settings, get_settings
from services.evaluation.monitor import evaluate_subset
from services.gateway.heldout import HeldOutStore
from services.gateway.loop.adapters import (
    HttpExecutor,
    HttpInference,
    RedisTrainer,
    StoreBuffers,
    StoreHistory,
)
from services.gateway.runner import LoopRunner
from services.gateway.store import TaskStore

log = logging.getLogger("azr.gateway")


def build_runner(settings: Settings, store: TaskStore, redis_url: str) -> LoopRunner:
    """A runner wired to the executor, inference and trainer named in the settings."""
    client = redis_lib.Redis.from_url(redis_url)
    executor = HttpExecutor(
        settings.executor.url,
        timeout_s=max(600.0, settings.executor.timeout_s * 20),
        token=settings.service_token,
    )
    inference = HttpInference(
        settings.inference.proposer_url,
        settings.inference.solver_url,
        settings.service_token,
        induction_inputs=settings.loop.induction_inputs,
        replicas=settings.inference.replica_urls or None,
    )

    def ports(run_id: int, cfg: LoopSettings) -> LoopPorts:
        run_inference = inference
        if cfg.induction_inputs != settings.loop.induction_inputs:
            run_inference = HttpInference(
                settings.inference.proposer_url,
                settings.inference.solver_url,
                settings.service_token,
                induction_inputs=cfg.induction_inputs,
                replicas=settings.inference.replica_urls or None,
            )
        return LoopPorts(
            inference=run_inference,
            executor=executor,
            buffers=StoreBuffers(store, run_id),
            trainer=RedisTrainer(client, settings),
            history=StoreHistory(store, run_id),
            heldout=HeldOutStore(store.sessions, run_id),
            bench_eval=evaluate_subset,
        )

    return LoopRunner(settings, store, ports, inference=inference, executor=executor)


def create_gateway(settings: Settings) -> tuple[Any, LoopRunner, Any]:
    """(app, runner, embedded redis or None); the caller recovers runs and shuts down."""
    from services.gateway.app import create_app

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = TaskStore.from_settings(settings)
    redis_url, embedded = resolve_redis_url(settings.data_dir, settings.redis_url)
    runner = build_runner(settings, store, redis_url)
    app = create_app(settings, runner, store=store)
    app.state.runner = runner
    return app, runner, embedded


def serve(host: str | None = None, port: int | None = None, role: str = "gateway") -> None:
    import uvicorn

    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    app, runner, embedded = create_gateway(settings)
    # runs left "running" by a crash or kill continue from their step journals
    resumed = runner.recover()
    if resumed:
        log.info("resumed runs %s", resumed)
    try:
        uvicorn.run(
            app,
            host=host or settings.gateway_host,
            port=port or settings.gateway_port,
            log_level=settings.log_level.lower(),
        )
    finally:
        runner.shutdown()
        if embedded is not None:
            embedded.stop()
