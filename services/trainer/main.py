"""`azr serve trainer`: the consumer loop in a background thread, the HTTP API in front."""

from __future__ import annotations

import logging
import os
import threading

from azr.common.http import set_fatal
from azr.common.redis_server import resolve_redis_url
from azr.settings import get_settings
from services.trainer.app import create_app
from services.trainer.distributed import shutdown, world_from_env
from services.trainer.service import TrainerService

log = logging.getLogger(__name__)


def serve(host: str | None = None, port: int | None = None, role: str = "trainer") -> None:
    import uvicorn

    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    from transformers.utils import logging as hf_logging

    # Per-load progress bars would fill the service log.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    url, embedded = resolve_redis_url(settings.data_dir, settings.redis_url)
    service = TrainerService(settings, url)
    stop = threading.Event()
    rank, world, _ = world_from_env()
    if rank != 0:  # a torchrun worker: no HTTP, no Redis; it follows rank 0
        service.setup()
        service.follow()
        shutdown(service.dist)
        return

    def work() -> None:
        try:
            service.setup()
        except Exception as exc:
            log.exception("trainer setup failed")
            with service.lock:
                service.phase, service.error = "error", f"setup failed: {exc}"
            if world > 1:
                os._exit(1)  # the other ranks wait in a collective: let torchrun restart all
            # /healthz answers 503 with the reason, then the process exits for a restart
            set_fatal(f"trainer setup failed: {type(exc).__name__}: {exc}")
            return
        try:
            service.run(stop)
        except Exception:
            # A rank failed mid-step (RankFailure or a broken collective): exit so that
            # torchrun restarts every rank from the last saved version.
            log.exception("sharded trainer step failed; exiting for a restart")
            os._exit(1)

    # The model loads in the background so /healthz answers at once and /readyz says when.
    worker = threading.Thread(target=work, name="trainer-loop", daemon=True)
    worker.start()
    try:
        uvicorn.run(
            create_app(service),
            host=host or settings.trainer.host,
            port=port or settings.trainer.port,
            log_level=settings.log_level.lower(),
            access_log=False,  # status polls would drown the step log
        )
    finally:
        stop.set()
        # An update in flight finishes before the thread sees the flag; never block exit on it.
        worker.join(timeout=5)
        if embedded is not None:
            embedded.stop()
        if world > 1 and worker.is_alive():
            # Stuck in a collective (a peer is gone): a thread blocked in C++ would keep the
            # interpreter from exiting, and torchrun waits for every rank.
            os._exit(1)
