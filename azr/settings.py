"""The one settings object. Every knob is an env var (``AZR_`` prefix, ``__`` for sections,
e.g. ``AZR_LOOP__BATCH_SIZE=8``) and can be overridden by CLI flags."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# How the trainer averages the loss over a batch (azr.core.trrpp.loss_token_weights).
LossAggregation = Literal["token_mean", "group_token_mean"]
# How a solver answer is graded (azr.core.rewards.solver_reward).
SolverRewardScheme = Literal["format_aware", "binary"]

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
        8,
        ge=1,
        le=64,
        description="sandbox children a fork-server forks at once, each with its job; they lock "
        "down together and run one at a time (the name is from when they waited for jobs)",
    )
    request_timeout_s: float = Field(600.0, description="how long the API waits for a batch")
    visibility_timeout_s: int | None = Field(
        None,
        description="a chunk whose worker died unacked is redelivered after this; unset: the "
        "longest a chunk may run (chunk_size x max item timeout + margin) plus a margin. A value "
        "at or below that longest chunk is refused at start (it would run chunks twice)",
    )
    runtime: Literal["native", "runsc"] = Field(
        "native", description="runsc: run the fork-servers inside gVisor (`runsc do`, root)"
    )
    child_filter: Literal["auto", "always"] = Field(
        "auto",
        description="auto: children inherit the fork-server's seccomp filter and add only what "
        "its probe children show they need; always: every child also loads the whole child "
        "filter (~7% more CPU per validation)",
    )
    allow_degraded_sandbox: bool = Field(
        False,
        description="serve even when an isolation layer is missing (otherwise /readyz is not "
        "ready and workers refuse work)",
    )
    max_answer_chars: int = Field(
        10_000, description="/v1/verify: an answer or gold text over this is that item's error"
    )
    verify_item_budget_s: float = Field(
        30.0, description="/v1/verify: sandbox time budget of one item, all its runs together"
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
    checkpoint_root: Path | None = Field(
        None,
        description="the only folder POST /v1/weights loads from (besides the served base "
        "model); unset: <data_dir>/checkpoints",
    )
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
    replica_urls: list[str] = Field(
        default_factory=list,
        description="inference replicas the gateway spreads requests over; empty: solver_url "
        "(and proposer_url)",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM: GPUs one model is split over")
    data_parallel_size: int = Field(1, ge=1, description="vLLM: engine copies in one server")
    gpu_memory_utilization: float = Field(
        0.9, gt=0.0, le=1.0, description="vLLM: share of each GPU for weights + KV cache"
    )
    weight_transfer: Literal["filesystem"] = Field(
        "filesystem", description="how a new version reaches the engines (docs/deploy.md)"
    )


class PromptSettings(BaseModel):
    """Prompt profiles (docs/algorithm.md, "Prompt profiles", has the measured comparison):
    paper = the reference's wording, fenced answers in <answer> after a pre-opened <think>;
    opener = the format in words, no example answer, a reply opener the model completes (e.g.
    `f(3) returns `); opener-think = the opener inside the R1 envelope."""

    solve_profile: Literal["paper", "opener", "opener-think"] = Field(
        "opener-think",
        description="how solvers are asked (the loop's and the evaluation's): on SmolLM2-135M "
        "the paper's example answers were copied by 94-100% of abduction/induction answers, "
        "the openers' by none",
    )
    propose_profile: Literal["paper", "opener", "opener-think"] = Field(
        "opener-think",
        description="how proposers are asked: the openers write a program proposal in two "
        "stages (the program, then one call's arguments); on SmolLM2-135M the paper wording's "
        "valid proposals were copies of its references or example",
    )


class TrainerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8400
    stream: str = "azr:reward-batches"
    dead_letter_stream: str = "azr:reward-batches:dead"
    group: str = "trainer"
    lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    clip_ratio: float = 0.2
    entropy_coef: float = 0.001
    solver_baseline: Literal["task_role", "task"] = Field(
        default="task_role",
        description="task_role: TRR++; task: the solver samples of one task share a baseline",
    )
    loss_aggregation: LossAggregation = Field(
        default="token_mean",
        description="token_mean: batch token mean (reference); group_token_mean: each task x "
        "role group's token mean, averaged over groups",
    )
    kl_coef: float = Field(default=0.0, description=">0 loads a frozen reference model for KL")
    tis_cap: float = Field(default=2.0, description="truncated importance-weight cap (mismatch)")
    micro_batch_tokens: int = 4096
    pack_prompts: bool = Field(
        default=True,
        description="samples with one prompt train as one row: the prompt once, then each "
        "completion (same log-probs; the solver's answers to one task share their prompt)",
    )
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
    fsdp: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="shard with FSDP2 across torchrun ranks; auto: when launched on >1 rank",
    )
    activation_checkpointing: bool = Field(
        default=False, description="recompute decoder layers in backward (less activation memory)"
    )
    dist_timeout_s: float = Field(
        default=1800.0, description="collective timeout between trainer ranks (idle waits too)"
    )
    dead_batches_key: str = Field(
        default="azr:trainer:dead-batches",
        description="hash batch_id -> why it was dead-lettered (the gateway fails that step)",
    )
    update_attempts: int = Field(
        default=3, ge=1, description="tries of an update that fails transiently before dead-letter"
    )
    trim_acked: bool = Field(
        default=True, description="delete a reward batch from the stream once acknowledged"
    )
    redis_memory_alarm: float = Field(
        default=0.8, gt=0, le=1, description="warn when Redis uses this fraction of maxmemory"
    )


class LoopSettings(BaseModel):
    batch_size: int = Field(
        64, ge=1, le=4096, description="sequences per task x role group per step"
    )
    propose_batch_size: int = Field(
        0,
        ge=0,
        le=4096,
        description="proposals per task type per step; 0: batch_size (the reference: the same)",
    )
    solver_max_new: int = Field(
        0,
        ge=0,
        le=4096,
        description="newest tasks (last step's) first in a solver batch at most, the rest drawn "
        "uniformly from the buffer; 0: batch_size (the reference's max_new)",
    )
    solver_skip_echo: bool = Field(
        False,
        description="keep tasks whose every output equals its input out of solver batches and "
        "proposer references (they stay in the buffer); such tasks reward copying the prompt. "
        "Off: the reference, which trains on every validated task",
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
    solver_samples: int = Field(
        1,
        ge=1,
        le=16,
        description="answers sampled and trained per solver-batch task (the reference: 1)",
    )
    train_roles: list[Literal["propose", "solve"]] = Field(
        default=["propose", "solve"],
        min_length=1,
        description="roles whose samples go to the trainer (the reference: both); "
        '["solve"] trains the solver alone (an ablation: the proposer gets no updates of its '
        "own, but shares the network the solver's updates change)",
    )
    solver_temperature: float | None = Field(
        None,
        ge=0.0,
        le=5.0,
        description="temperature of the solver's answers; None: `temperature` (proposals and "
        "answers alike, as the reference)",
    )
    learnability_temperature: float | None = Field(
        None,
        ge=0.0,
        le=5.0,
        description="temperature of the learnability rollouts; None: the solver's, the one "
        "it is trained at (the reference uses 1.0)",
    )
    trivial_reward: float = Field(
        -0.5, ge=-1.0, le=0.0, description="reward of a valid proposal with learnability 0"
    )
    solver_reward: SolverRewardScheme = Field(
        "format_aware",
        description="format_aware: 1 / -0.5 wrong / -1 bad format (the reference); binary: "
        "1 correct, 0 otherwise",
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
    heldout_file: str | None = Field(
        None,
        description="another run's held-out set to reuse (its runs/<id>/heldout.jsonl; validated "
        "by the executor) instead of drawing one; heldout_tasks_per_type is then not used",
    )
    weights_timeout_s: float = Field(
        1800.0, description="how long a step waits for the trainer's next version before failing"
    )
    # The seeding stage (step 0, reference "InitSeeding") and the held-out yardstick.
    seed_tasks_per_type: int = Field(
        256,
        ge=0,
        le=16384,
        description="seeding stage: the base model proposes (no updates) until each task "
        "type's buffer holds this many validated, de-duplicated tasks (reference: 256); "
        "0 skips the stage",
    )
    heldout_tasks_per_type: int = Field(
        64,
        ge=0,
        le=4096,
        description="seeding stage: validated base-model tasks per task type kept apart as the "
        "in-distribution held-out set (never in a buffer or a training batch)",
    )
    seed_batch_size: int = Field(
        0, ge=0, le=4096, description="proposals per task type per seeding round; 0: batch_size"
    )
    seed_max_rounds: int = Field(
        100, ge=1, description="the seeding stage ends after this many rounds, full or not"
    )
    indist_eval_every: int = Field(
        0, ge=0, description="in-loop monitor: solve the held-out set every N steps; 0: never"
    )
    # Trainer hyper-parameters of this run, sent with every reward batch (None: the trainer's
    # own AZR_TRAINER__* setting).
    lr: float | None = Field(None, gt=0.0, le=1.0, description="learning rate of this run")
    entropy_coef: float | None = Field(
        None, ge=0.0, le=1.0, description="entropy bonus coefficient of this run"
    )
    solver_baseline: Literal["task_role", "task"] | None = Field(
        None,
        description="advantage baseline of the solver samples: task_role (TRR++) or task "
        "(the samples of one task against each other; useful with solver_samples > 1)",
    )
    loss_aggregation: LossAggregation | None = Field(
        None,
        description="token_mean (reference) or group_token_mean (every task x role group "
        "pulls equally, whatever its response lengths)",
    )

    @property
    def proposals_per_step(self) -> int:
        """Proposals per task type per step. Apart from the solver's batch because with an
        untrained proposer they cost no training, and a few valid ones per step rarely have
        learnability above 0 (docs/results.md, run 6)."""
        return self.propose_batch_size or self.batch_size


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
    service_token: str | None = Field(
        None,
        description="bearer token of the executor and inference data routes (run, validate, "
        "verify, generate, propose, solve, weights); unset: those services only bind to "
        "loopback. `azr up` generates one for the stack",
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="largest request body any service reads (413)"
    )
    log_level: str = "INFO"
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    executor: ExecutorSettings = ExecutorSettings()
    inference: InferenceSettings = InferenceSettings()
    prompts: PromptSettings = PromptSettings()
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
