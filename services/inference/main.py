"""`azr serve proposer|solver|inference`: engine and model from settings, then uvicorn."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from azr.common.http import InsecureBind, require_token_for_bind
from azr.common.model import resolve_model
from azr.settings import Settings, get_settings
from services.inference.app import build_app
from services.inference.engine import Engine
from services.inference.service import InferenceService
from services.inference.transfer import make_transfer


def make_engine(settings: Settings, model_dir: Path | None = None) -> Engine:
    cfg = settings.inference
    model_dir = model_dir or resolve_model(settings)
    if cfg.engine == "transformers":
        from services.inference.transformers_engine import TransformersEngine

        return TransformersEngine(
            model_dir,
            device=cfg.device,
            dtype=cfg.dtype,
            max_batch=cfg.max_batch,
            # Two compute threads on a busy 2-core machine ran 2-6x slower than one.
            cpu_threads=cfg.cpu_threads or max(1, (os.cpu_count() or 2) // 2),
        )
    from services.inference.vllm_engine import VLLMEngine, vllm_port

    return VLLMEngine(
        model_dir,
        url=cfg.vllm_url,
        port=vllm_port(cfg.vllm_port),
        dtype=cfg.dtype,
        max_model_len=cfg.max_model_len,
        enforce_eager=cfg.vllm_enforce_eager,
        kv_cache_gib=cfg.vllm_kv_cache_gib,
        startup_timeout_s=cfg.vllm_startup_timeout_s,
        log_path=settings.data_dir / "logs" / f"vllm-{cfg.vllm_port}.log",
        # A trainer that trains LoRA publishes adapters: serve them on the unchanged base.
        enable_lora=settings.trainer.lora,
        max_lora_rank=settings.trainer.lora_rank,
        tensor_parallel_size=cfg.tensor_parallel_size,
        data_parallel_size=cfg.data_parallel_size,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
    )


def make_service(settings: Settings, engine: Engine) -> InferenceService:
    cfg = settings.inference
    return InferenceService(
        engine=engine,
        max_model_len=cfg.max_model_len,
        prompt_style=cfg.prompt_style,
        solve_profile=settings.prompts.solve_profile,
        propose_profile=settings.prompts.propose_profile,
        answer_prefill=cfg.answer_prefill,
        close_answers=cfg.close_answers,
        stop=list(cfg.stop),
        banned=list(settings.executor.banned_modules),
        transfer=make_transfer(cfg.weight_transfer),
    )


def serve(host: str | None = None, port: int | None = None, role: str = "inference") -> None:
    import uvicorn

    settings = get_settings()
    logging.basicConfig(level=settings.log_level)
    if role not in ("proposer", "solver", "inference"):
        raise ValueError(f"unknown inference role {role!r}")
    host = host or settings.inference.host
    try:
        require_token_for_bind(role, host, settings.service_token)
    except InsecureBind as exc:
        raise SystemExit(str(exc)) from None
    service = make_service(settings, make_engine(settings))
    app = build_app(
        service,
        role=role,  # type: ignore[arg-type]
        token=settings.service_token,
        checkpoint_root=settings.inference.checkpoint_root or settings.checkpoint_dir,
        max_body_bytes=settings.max_body_bytes,
        exit_on_fatal=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port or settings.inference.port,
        log_level=settings.log_level.lower(),
    )
