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
    "logging",
    "random",
    "multiprocessing",
    "pebble",
    "subprocess",
    "threading",
    "datetime",
    "time",
    "hashlib",
    "hmac",
    "bcrypt",
    "os",
    "sys",
    "calendar",
    "socket",
    "shutil",
    "signal",
    "ctypes",
    "pickle",
    "marshal",
    "importlib",
    "builtins",
    "gc",
    "inspect",
    "io",
    "pathlib",
    "tempfile",
    "resource",
    "asyncio",
    "concurrent",
    "urllib",
    "http",
    "ftplib",
    "select",
    "selectors",
    "mmap",
    "fcntl",
    "pty",
    "code",
    "codeop",
    "runpy",
    "platform",
    "uuid",
    "secrets",
)


class ExecutorSettings(BaseModel):
    url: str = "http://127.0.0.1:8100"
    host: str = "127.0.0.1"
    port: int = 8100
    workers: int = Field(
        2, ge=0, description="Celery worker processes (sandbox slots) per replica; 0: API only"
    )
    queue: str = "azr-executor"
    timeout_s: float = Field(10.0, description="wall-clock limit per program")
    max_timeout_s: float = Field(60.0, description="largest per-item timeout_s a request may ask")
    cpu_s: int = Field(10, description="RLIMIT_CPU per program")
    memory_mb: int = Field(512, description="RLIMIT_AS per program")
    max_output_chars: int = Field(4000, description="cap on a program's repr output")
    max_program_chars: int = 20000
    max_batch_items: int = 512
    banned_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_BANNED_MODULES))
    determinism_second_process: bool = Field(
        True, description="re-run in a second process with another hash seed"
    )
    chunk_size: int = Field(32, description="items per Celery task when a batch is split")
    spare_children: int = Field(
        8, ge=1, le=64, description="pre-forked sandbox children per fork-server, forked in bursts"
    )
    request_timeout_s: float = Field(600.0, description="how long the API waits for a batch")
    visibility_timeout_s: int = Field(
        120, description="a batch whose worker died unacked is redelivered after this"
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
    vllm_enforce_eager: bool = Field(False, description="skip torch.compile (faster start-up)")
    vllm_kv_cache_gib: int = Field(2, description="VLLM_CPU_KVCACHE_SPACE on CPU")
    vllm_startup_timeout_s: float = 900.0
    max_batch: int = Field(64, description="transformers engine: sequences per generate call")
    cpu_threads: int = Field(0, description="transformers engine torch threads; 0: half the cores")
    prompt_style: Literal["chat", "plain"] = Field(
        "chat",
        description="chat: R1 instruction as system turn, assistant turn opened with "
        "<think>; plain: the R1 envelope as raw text",
    )
    answer_prefill: bool = Field(
        False, description="pre-open the answer block after <think> (cold-start models)"
    )
    close_answers: bool = Field(
        True,
        description="end a generation once its answer holds every block the role needs and "
        "write </answer> for it (tokens after that point are dropped)",
    )
    stop: list[str] = Field(default_factory=lambda: ["</answer>"])


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
    kl_coef: float = Field(default=0.0, description=">0 loads a frozen reference model for KL")
    tis_cap: float = Field(default=2.0, description="truncated importance-weight cap (mismatch)")
    micro_batch_tokens: int = 4096
    lora: bool = False
    lora_rank: int = 16
    keep_last: int = 3
    keep_every: int = 10
    consumer: str = Field(default="trainer-1", description="consumer name, stable across restarts")
    versions_stream: str = "azr:weights:versions"
    latest_key: str = "azr:weights:latest"
    batch_versions_key: str = Field(
        default="azr:trainer:batch-versions", description="hash batch_id -> version (idempotency)"
    )
    model: str | None = Field(default=None, description="base HF model dir; default: inference's")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    autocast: Literal["auto", "bf16", "off"] = Field(default="auto", description="bf16 on CUDA")
    lora_alpha: int = 32
    claim_idle_ms: int = Field(default=60000, description="claim others' entries idle this long")
    max_batch_tokens: int = Field(default=2_000_000, description="reject larger reward batches")


class LoopSettings(BaseModel):
    batch_size: int = Field(
        64, ge=1, le=4096, description="sequences per task x role group per step"
    )
    n_rollouts: int = Field(
        8, ge=1, le=64, description="solver rollouts per proposal for learnability"
    )
    k_references: int = Field(6, ge=0, le=32)
    induction_inputs: int = Field(10, ge=2, le=64)
    max_prompt_tokens: int = Field(1536, ge=64)
    max_tokens: int = Field(512, ge=1, le=32768)
    temperature: float = Field(1.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    trivial_reward: float = Field(
        -0.5, ge=-1.0, le=0.0, description="reward of a valid proposal with learnability 0"
    )
    steps: int = Field(100, ge=1)
    seed: int = 0
    mode: Literal["sync", "async"] = "sync"
    max_staleness: int = Field(1, ge=0)
    buffer_cap: int = Field(16384, ge=16)
    eval_every: int = Field(0, ge=0)
    log_samples: int = Field(
        2,
        ge=0,
        le=64,
        description="raw responses per task x role group kept in each step's journal entry",
    )
    task_types: list[str] = Field(default_factory=lambda: ["deduction", "abduction", "induction"])
    seed_file: str | None = Field(
        None,
        description="seed tasks (JSONL; validated by the executor) instead of the identity seed",
    )
    weights_timeout_s: float = Field(
        1800.0, description="how long a step waits for the trainer's next version before failing"
    )


class EvalSettings(BaseModel):
    cruxeval_path: Path | None = Field(
        default=None,
        description="CRUXEval JSONL; default: ../shared/data/cruxeval.jsonl from the repo root",
    )
    max_tokens: int = Field(default=512, description="new tokens per evaluation answer")
    temperature: float = Field(default=0.8, description="sampling temperature when --samples > 1")
    top_p: float = 0.95
    bootstrap_resamples: int = 2000
    seed: int = 0
    monitor_limit: int = Field(
        default=32, description="CRUXEval problems in the fixed in-loop subset"
    )
    # Reward-hacking flags: a signal above its threshold is listed in the step's `flags`.
    max_trivial_share: float = Field(
        default=0.5, description="identity/constant programs among valid proposals"
    )
    max_duplicate_rate: float = Field(
        default=0.5, description="repeated (program, input) among valid proposals"
    )
    max_solved_share: float = Field(
        default=0.8, description="valid proposals with learnability 0 (solve rate 1)"
    )
    max_determinism_rejections: float = Field(
        default=0.3, description="proposals rejected as nondeterministic"
    )
    min_program_chars: float = Field(
        default=30.0, description="mean program length below this is flagged"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AZR_", env_nested_delimiter="__", extra="ignore")

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
    eval: EvalSettings = EvalSettings()

    @property
    def checkpoint_dir(self) -> Path:
        return self.data_dir / "checkpoints"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'azr.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
