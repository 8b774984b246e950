"""`azr serve trainer`: the consumer loop in a background thread, the HTTP API in front."""

from __future__ import annotations

import logging
import threading

from azr.common.redis_server import resolve_redis_url
from azr.settings import get_settings
from services.trainer.app import create_app
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

    def work() -> None:
        try:
            service.setup()
        except Exception as exc:
            log.exception("trainer setup failed")
            with service.lock:
                service.phase, service.error = "error", f"setup failed: {exc}"
            return
        service.run(stop)

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
