"""The one settings object. Every knob is an env var (``AZR_`` prefix, ``__`` for sections,
e.g. ``AZR_LOOP__BATCH_SIZE=8``) and can be overridden by CLI flags."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Modules a proposed program may not import or reference (the reference's list, plus the
# process/network/introspection modules a sandbox escape would reach for).
DEFAULT_BANNED_MODULES: tuple[str, ...] = (
    "logging", "random", "multiprocessing", "pebble", "subprocess", "threading", "datetime",
    "time", "hashlib", "hmac", "bcrypt", "os", "sys", "calendar", "socket", "shutil", "signal",
    "ctypes", "pickle", "marshal", "importlib", "builtins", "gc", "inspect", "io", "pathlib",
    "tempfile", "resource", "asyncio", "concurrent", "urllib", "http", "ftplib", "select",
    "selectors", "mmap", "fcntl", "pty", "code", "codeop", "runpy", "platform", "uuid", "secrets",
)


class ExecutorSettings(BaseModel):
    url: str = "http://127.0.0.1:8100"
    host: str = "127.0.0.1"
    port: int = 8100
    workers: int = Field(2, description="Celery worker processes (sandbox slots) per replica")
    queue: str = "azr-executor"
    timeout_s: float = Field(10.0, description="wall-clock limit per program")
    cpu_s: int = Field(10, description="RLIMIT_CPU per program")
    memory_mb: int = Field(512, description="RLIMIT_AS per program")
    max_output_chars: int = Field(4000, description="cap on a program's repr output")
    max_program_chars: int = 20000
    max_batch_items: int = 512
    banned_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_BANNED_MODULES))
    determinism_second_process: bool = Field(
        True, description="re-run in a second process with another hash seed"
    )


class InferenceSettings(BaseModel):
    engine: Literal["vllm", "transformers"] = "vllm"
    model: str | None = Field(None, description="HF model directory; default: bundled SmolLM2")
    vllm_url: str | None = Field(None, description="use an already running vLLM server")
    vllm_port: int = 8300
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    max_model_len: int = 2048
    device: Literal["auto", "cpu", "cuda"] = "auto"
    proposer_url: str = "http://127.0.0.1:8200"
    solver_url: str = "http://127.0.0.1:8200"
    host: str = "127.0.0.1"
    port: int = 8200


class TrainerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8400
    url: str = "http://127.0.0.1:8400"
    stream: str = "azr:reward-batches"
    dead_letter_stream: str = "azr:reward-batches:dead"
    group: str = "trainer"
    announce_channel: str = "azr:weights"
    lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    clip_ratio: float = 0.2
    entropy_coef: float = 0.001
    kl_coef: float = 0.0
    tis_cap: float = Field(2.0, description="truncated importance-weight cap for the mismatch")
    micro_batch_tokens: int = 4096
    lora: bool = False
    lora_rank: int = 16
    keep_last: int = 3
    keep_every: int = 10


class LoopSettings(BaseModel):
    batch_size: int = Field(64, description="sequences per task x role group per step")
    n_rollouts: int = Field(8, description="solver rollouts per proposal for learnability")
    k_references: int = 6
    induction_inputs: int = 10
    max_prompt_tokens: int = 1536
    max_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    trivial_reward: float = Field(-0.5, description="reward of a valid proposal with learnability 0")
    steps: int = 100
    seed: int = 0
    mode: Literal["sync", "async"] = "sync"
    max_staleness: int = 1
    buffer_cap: int = 16384
    eval_every: int = 0
    task_types: list[str] = Field(
        default_factory=lambda: ["deduction", "abduction", "induction"]
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AZR_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path(".azr")
    redis_url: str | None = Field(None, description="unset: start an embedded Redis")
    database_url: str | None = Field(None, description="unset: SQLite in the data directory")
    api_token: str = Field("azr-dev-token", description="bearer token for mutating routes")
    log_level: str = "INFO"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    executor: ExecutorSettings = ExecutorSettings()
    inference: InferenceSettings = InferenceSettings()
    trainer: TrainerSettings = TrainerSettings()
    loop: LoopSettings = LoopSettings()

    @property
    def checkpoint_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'azr.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
