"""The trainer's consumer loop: read reward batches from the Redis stream (consumer group),
update, save version v+1, announce it, and only then acknowledge the entry.

Crash safety rests on three facts: a version folder appears by one rename; the trainer state
(optimizer, batch_id -> version map) of a version is renamed into place before its weights; and
an entry is acknowledged after both. So after a crash the trainer reloads the newest version with
its optimizer state, re-reads its own pending entries, and a batch whose id already produced a
version is acknowledged without a second update.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import redis
import torch
from pydantic import ValidationError

from azr.common.checkpoints import (
    ChecksumMismatch,
    list_versions,
    read_manifest,
    save_model_checkpoint,
    verify_checkpoint,
    version_dir,
)
from azr.contracts.trainer import BATCH_FIELD, RewardBatch
from azr.settings import Settings
from services.trainer import metrics as prom
from services.trainer.distributed import (
    DistContext,
    barrier,
    broadcast,
    init_distributed,
    rank_device,
)
from services.trainer.loss import LossConfig
from services.trainer.policy import (
    add_lora,
    autocast_dtype,
    embeddings_tied,
    load_model,
    load_tokenizer,
    make_optimizer,
    pick_device,
    untied_for_save,
)
from services.trainer.state import (
    TrainerState,
    apply_retention,
    load_trainer_state,
    save_trainer_state,
)
from services.trainer.update import BatchRejected, Updater

log = logging.getLogger(__name__)


# Errors an update may hit without the batch being at fault (a full or flaky disk, a CUDA or
# I/O hiccup, Redis restarting): the entry stays pending and is retried before it is parked.
TRANSIENT = (OSError, RuntimeError, redis.ConnectionError, redis.TimeoutError)

# How many dead-lettered entries and version announcements the streams keep (approximately).
HISTORY_LEN = 1000


class RankFailure(RuntimeError):
    """An update or save failed on a sharded trainer: the ranks' states may differ, so the
    process exits and torchrun restarts the job from the last saved version."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _short(exc: BaseException, limit: int = 2000) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{loc or 'batch'}: {err.get('msg', 'invalid')}")
        text = "invalid reward batch: " + "; ".join(parts)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text[:limit]


def _batch_id_of(raw: Any) -> str | None:
    """The batch id of a stream payload that may not even be valid JSON."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    value = data.get("batch_id") if isinstance(data, dict) else None
    return str(value)[:200] if value else None


class TrainerService:
    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.cfg = settings.trainer
        self.root = Path(settings.checkpoint_dir)
        self.redis: Any = redis.Redis.from_url(redis_url)
        self.lock = threading.Lock()
        self.phase = "starting"
        self.current: dict[str, Any] | None = None  # batch being trained on
        self.last_step: dict[str, Any] | None = None
        self.counts = {"trained": 0, "duplicate": 0, "dead_letter": 0, "failed": 0}
        self.error: str | None = None
        self.ready = False
        self._recover_pending = True
        self.state = TrainerState()
        self.model: Any = None
        self.tokenizer: Any = None
        self.updater: Updater | None = None
        self.dist = DistContext()
        self._sent = False  # rank 0 broadcast this poll's command (sharded)
        self._attempts: dict[str, int] = {}  # batch_id -> failed update attempts
        self._memory_checked = 0.0
        self.redis_memory: float | None = None  # used / maxmemory, when a limit is set

    # ---------------------------------------------------------------- setup

    def base_model_dir(self) -> Path:
        if self.cfg.model:
            return Path(self.cfg.model)
        from azr.common.model import resolve_model

        return resolve_model(self.settings)

    def setup(self) -> None:
        """Ensure version 0 exists, load the newest version and its optimizer state, create the
        consumer group and announce the current version for late subscribers. On N ranks every
        rank calls it; rank 0 alone writes version 0 and talks to Redis."""
        self.dist = init_distributed(self.cfg, pick_device(self.cfg.device))
        if self.dist.is_main:
            self._init_versions()
        barrier(self.dist)
        self._load_latest()
        if self.dist.is_main:
            self._init_stream()
        with self.lock:
            self.phase, self.ready = "idle", True

    def _init_versions(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not list_versions(self.root):
            base = self.base_model_dir()
            model = load_model(base, torch.device("cpu"))
            tied = embeddings_tied(model)
            with untied_for_save(model):
                save_model_checkpoint(
                    model,
                    load_tokenizer(base),
                    self.root,
                    0,
                    {"kind": "full", "source": base.name, "tied_embeddings": tied},
                )
            del model
        apply_retention(self.root, self.cfg.keep_last, self.cfg.keep_every)

    def _init_stream(self) -> None:
        try:
            self.redis.xgroup_create(self.cfg.stream, self.cfg.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._catch_up_announcement()

    def _recreate_group(self, exc: BaseException) -> None:
        """Redis lost the stream or the group (restarted without its data, or flushed): create
        them again and announce the current version again. Batches that were on the lost
        stream are gone; the gateway sees they are neither queued nor trained and publishes
        them again from its journal (docs/trainer.md)."""
        log.error(
            "consumer group %s missing (%s): Redis lost its data; recreating", self.cfg.group, exc
        )
        self._init_stream()
        with self.lock:
            self.error = "Redis lost the reward stream; consumer group recreated"

    def _latest_valid_version(self) -> int:
        for v in reversed(list_versions(self.root)):
            try:
                verify_checkpoint(version_dir(self.root, v))
                return v
            except ChecksumMismatch as exc:  # renames are atomic; this is disk damage
                log.error("skipping damaged version %d: %s", v, exc)
        raise RuntimeError(f"no valid checkpoint version under {self.root}")

    def _load_latest(self) -> None:
        if self.dist.sharded:
            self._load_latest_sharded()
            return
        cfg = self.cfg
        device = pick_device(cfg.device)
        version = self._latest_valid_version()
        if cfg.lora:
            model = load_model(version_dir(self.root, 0), device)
            model = add_lora(model, cfg, version_dir(self.root, version) if version else None)
        else:
            model = load_model(version_dir(self.root, version), device)
        self.tokenizer = load_tokenizer(version_dir(self.root, version))
        optimizer = make_optimizer(model, cfg, device)
        saved = load_trainer_state(self.root, version)
        if saved is not None and saved[0].version == version:
            self.state, optim_state = saved
            optimizer.load_state_dict(optim_state)
        else:
            # Version 0, or a version whose state was lost: fresh optimizer moments.
            if version:
                log.warning("no trainer state for version %d; fresh optimizer state", version)
            self.state = TrainerState(version=version)
            batch_id = read_manifest(version_dir(self.root, version)).get("batch_id")
            if batch_id:
                self.state.batches[str(batch_id)] = version
        ref = None
        if cfg.kl_coef:
            ref = load_model(version_dir(self.root, 0), device).eval().requires_grad_(False)
        pad = getattr(self.tokenizer, "pad_token_id", None) if self.tokenizer else None
        self.model = model
        self.updater = Updater(
            model,
            optimizer,
            LossConfig(cfg.clip_ratio, cfg.entropy_coef, cfg.kl_coef, cfg.tis_cap),
            cfg.micro_batch_tokens,
            cfg.grad_clip,
            device,
            autocast_dtype(cfg.autocast, device),
            ref,
            pad_id=int(pad or 0),
            base_lr=cfg.lr,
            solver_baseline=cfg.solver_baseline,
            loss_aggregation=cfg.loss_aggregation,
            pack_prompts=cfg.pack_prompts,
        )
        prom.VERSION.set(version)
        log.info("trainer at version %d (%s, %s)", version, "lora" if cfg.lora else "full", device)

    def _load_latest_sharded(self) -> None:
        from services.trainer import sharded

        cfg, ctx = self.cfg, self.dist
        device = rank_device(pick_device(cfg.device), ctx)
        version = int(broadcast(self._latest_valid_version() if ctx.is_main else None, ctx))
        bf16 = autocast_dtype(cfg.autocast, device) is not None
        checkpointing = cfg.activation_checkpointing
        root = sharded.load_sharded(
            version_dir(self.root, version), device, ctx, bf16=bf16, checkpointing=checkpointing
        )
        optimizer = make_optimizer(root, cfg, device)
        saved = broadcast(
            sharded.read_sharded_state(self.root, version) if ctx.is_main else None, ctx
        )
        if saved is not None and saved.version == version:
            sharded.load_sharded_state(self.root, version, root, optimizer)
            self.state = saved
        else:
            if version:
                log.warning("no sharded trainer state for version %d; fresh optimizer", version)
            self.state = TrainerState(version=version)
            batch_id = read_manifest(version_dir(self.root, version)).get("batch_id")
            if batch_id:
                self.state.batches[str(batch_id)] = version
        ref = None
        if cfg.kl_coef:
            ref = sharded.load_sharded(
                version_dir(self.root, 0), device, ctx, bf16=bf16, checkpointing=False
            )
            ref.eval().requires_grad_(False)
        self.tokenizer = load_tokenizer(version_dir(self.root, version))
        pad = getattr(self.tokenizer, "pad_token_id", None) if self.tokenizer else None
        self.model = root.model
        self.updater = Updater(
            root,
            optimizer,
            LossConfig(cfg.clip_ratio, cfg.entropy_coef, cfg.kl_coef, cfg.tis_cap),
            cfg.micro_batch_tokens,
            cfg.grad_clip,
            device,
            None,  # bf16 compute comes from FSDP's mixed-precision policy
            pad_id=int(pad or 0),
            dist=ctx,
            forward=root,
            ref_forward=ref,
            base_lr=cfg.lr,
            solver_baseline=cfg.solver_baseline,
            loss_aggregation=cfg.loss_aggregation,
            pack_prompts=cfg.pack_prompts,
        )
        prom.VERSION.set(version)
        log.info("rank %d/%d at version %d (fsdp, %s)", ctx.rank, ctx.world_size, version, device)

    # ---------------------------------------------------------------- announcements

    def _announcement(self, version: int) -> dict[str, Any]:
        directory = version_dir(self.root, version)
        manifest = read_manifest(directory)
        return {
            "version": version,
            "path": str(directory.resolve()),
            "checksum": manifest.get("checksum"),
            "kind": manifest.get("kind", "full"),
            "base_version": manifest.get("base_version", 0),
            "batch_id": manifest.get("batch_id"),
            "run_id": manifest.get("run_id"),
            "step": manifest.get("step"),
            "metrics": manifest.get("metrics", {}),
            "created_at": manifest.get("created_at"),
        }

    def announce(self, version: int) -> None:
        """Record `version` in Redis: the batch map, the versions stream and the latest key (only
        ever moving forward). Safe to repeat."""
        body = self._announcement(version)
        text = json.dumps(body)
        pipe = self.redis.pipeline()
        if body["batch_id"]:
            pipe.hset(self.cfg.batch_versions_key, body["batch_id"], version)
        pipe.xadd(
            self.cfg.versions_stream,
            {"version": str(version), "announcement": text},
            maxlen=HISTORY_LEN,
            approximate=True,
        )
        pipe.execute()
        current = self.redis.get(self.cfg.latest_key)
        if current is None or json.loads(current).get("version", -1) < version:
            self.redis.set(self.cfg.latest_key, text)

    def _catch_up_announcement(self) -> None:
        current = self.redis.get(self.cfg.latest_key)
        if current is None or json.loads(current).get("version", -1) < self.state.version:
            self.announce(self.state.version)

    # ---------------------------------------------------------------- the loop

    def run(self, stop: threading.Event, block_ms: int = 1000) -> None:
        while not stop.is_set():
            try:
                self.poll_once(block_ms)
            except RankFailure:
                raise
            except redis.ConnectionError as exc:
                log.warning("redis unavailable: %s", exc)
                self._loop_error(exc)
                stop.wait(1.0)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    log.exception("trainer loop error")
                    self._loop_error(exc)
                    stop.wait(1.0)
                    continue
                self._recover_pending = True
                try:
                    self._recreate_group(exc)
                except redis.RedisError as again:
                    self._loop_error(again)
                    stop.wait(1.0)
            except Exception as exc:  # keep serving; the entry stays pending and is retried
                log.exception("trainer loop error")
                self._loop_error(exc)
                stop.wait(1.0)
        if self.dist.sharded:
            broadcast(("stop",), self.dist)

    def follow(self) -> None:
        """Ranks 1..N-1: train on what rank 0 broadcasts (it alone reads the stream), so each
        batch reaches every rank exactly once; rank 0's heartbeat (None) comes every poll."""
        while True:
            command = broadcast(None, self.dist)
            if command is None:
                continue
            if command[0] == "stop":
                return
            _, entry_id, raw = command
            self.train_and_save(entry_id, raw, RewardBatch.model_validate_json(raw))

    def _loop_error(self, exc: BaseException) -> None:
        self._recover_pending = True
        with self.lock:
            self.error = _short(exc)
            if self.phase != "starting":
                self.phase, self.current = "idle", None

    def poll_once(self, block_ms: int = 1000) -> int:
        """Handle at most one entry: own pending ones first (after a restart or a failed save),
        then entries abandoned by another consumer, then new ones."""
        cfg = self.cfg
        entries: list[tuple[Any, Any]] = []
        if self._recover_pending:
            got = self.redis.xreadgroup(cfg.group, cfg.consumer, {cfg.stream: "0"}, count=1)
            entries = got[0][1] if got else []
            if not entries:
                self._recover_pending = False
        if not entries and cfg.claim_idle_ms > 0:
            claimed = self.redis.xautoclaim(
                cfg.stream, cfg.group, cfg.consumer, cfg.claim_idle_ms, "0-0", count=1
            )
            entries = claimed[1] if len(claimed) > 1 else []
        if not entries:
            got = self.redis.xreadgroup(
                cfg.group, cfg.consumer, {cfg.stream: ">"}, count=1, block=block_ms
            )
            entries = got[0][1] if got else []
        self._sent = False
        try:
            for entry_id, fields in entries:
                self.handle(_text(entry_id), fields)
        finally:
            if self.dist.sharded and not self._sent:
                broadcast(None, self.dist)  # nothing to train this poll
        self._refresh_backlog()
        self._check_memory()
        return len(entries)

    def _ack(self, entry_id: str) -> None:
        pipe = self.redis.pipeline()
        pipe.xack(self.cfg.stream, self.cfg.group, entry_id)
        if self.cfg.trim_acked:
            # An acknowledged batch is in a version (or in the dead-letter stream): a 5 MB
            # entry kept forever would fill Redis in a few hundred steps.
            pipe.xdel(self.cfg.stream, entry_id)
        pipe.execute()

    def _check_memory(self, every_s: float = 10.0) -> None:
        """Redis runs with `noeviction`: when it is full, writes fail instead of reward batches
        vanishing. Warn (log, metric, status) well before that."""
        now = time.monotonic()
        if now - self._memory_checked < every_s:
            return
        self._memory_checked = now
        info = self.redis.info("memory")
        limit = int(info.get("maxmemory", 0) or 0)
        if limit <= 0:
            self.redis_memory = None
            prom.REDIS_MEMORY.set(0)
            return
        used = int(info.get("used_memory", 0)) / limit
        self.redis_memory = used
        prom.REDIS_MEMORY.set(used)
        if used >= self.cfg.redis_memory_alarm:
            log.error(
                "Redis memory at %.0f%% of maxmemory (%d bytes); reward batches will be refused "
                "when it is full (policy %s)",
                used * 100,
                limit,
                _text(info.get("maxmemory_policy", "?")),
            )

    def dead_letter(self, entry_id: str, raw: Any, reason: str) -> None:
        payload = _text(raw)[:100_000] if raw is not None else ""
        pipe = self.redis.pipeline()
        pipe.xadd(
            self.cfg.dead_letter_stream,
            {"entry_id": entry_id, "reason": reason, "payload": payload},
            maxlen=HISTORY_LEN,
            approximate=True,
        )
        batch_id = _batch_id_of(raw)
        if batch_id:
            # the gateway waits on this batch's version: this mark lets it fail the step now
            record = {"reason": reason, "entry_id": entry_id, "at": time.time()}
            pipe.hset(self.cfg.dead_batches_key, batch_id, json.dumps(record))
        pipe.execute()
        self._ack(entry_id)
        self._count("dead_letter")
        log.warning("dead-lettered %s: %s", entry_id, reason)

    def _count(self, outcome: str) -> None:
        prom.BATCHES.labels(outcome=outcome).inc()
        with self.lock:
            self.counts[outcome] += 1

    def handle(self, entry_id: str, fields: dict[Any, Any] | None) -> None:
        if not fields:  # the entry was deleted from the stream while pending
            self._ack(entry_id)
            return
        raw = fields.get(BATCH_FIELD.encode(), fields.get(BATCH_FIELD))
        if raw is None:
            self.dead_letter(entry_id, None, f"stream entry has no '{BATCH_FIELD}' field")
            return
        try:
            batch = RewardBatch.model_validate_json(raw)
        except ValidationError as exc:
            self.dead_letter(entry_id, raw, _short(exc))
            return
        if batch.n_tokens > self.cfg.max_batch_tokens:
            reason = f"batch has {batch.n_tokens} tokens, over max_batch_tokens"
            self.dead_letter(entry_id, raw, f"{reason}={self.cfg.max_batch_tokens}")
            return

        done = self.state.batches.get(batch.batch_id)
        if done is None:
            found = self.redis.hget(self.cfg.batch_versions_key, batch.batch_id)
            done = int(found) if found is not None else None
        if done is not None:
            self._catch_up_announcement()
            self._ack(entry_id)
            self._count("duplicate")
            log.info("batch %s already produced version %d; acknowledged", batch.batch_id, done)
            return
        self.train_and_save(entry_id, raw, batch)

    def train_and_save(self, entry_id: str, raw: Any, batch: RewardBatch) -> None:
        assert self.updater is not None
        if self.dist.sharded and self.dist.is_main:
            broadcast(("train", entry_id, _text(raw)), self.dist)
            self._sent = True
        with self.lock:
            self.phase = "updating"
            self.current = {
                "entry_id": entry_id,
                "batch_id": batch.batch_id,
                "run_id": batch.run_id,
                "step": batch.step,
                "micro_batch": 0,
                "micro_batches": 0,
            }

        def progress(k: int, n: int) -> None:
            with self.lock:
                if self.current is not None:
                    self.current.update(micro_batch=k + 1, micro_batches=n)

        try:
            result = self.updater.step(batch, progress)
        except BatchRejected as exc:  # the same check on every rank: all of them skip it
            self._idle()
            if self.dist.is_main:
                self.dead_letter(entry_id, raw, str(exc))
            return
        except Exception as exc:
            if self.dist.sharded:
                raise RankFailure(f"update on batch {batch.batch_id} failed: {exc}") from exc
            log.exception("update on batch %s failed", batch.batch_id)
            self._reload()
            self._idle(error=_short(exc))
            attempts = self._attempts.get(batch.batch_id, 0) + 1
            if isinstance(exc, TRANSIENT) and attempts < self.cfg.update_attempts:
                # The entry stays pending: the next poll re-reads it after a short backoff.
                self._attempts[batch.batch_id] = attempts
                self._recover_pending = True
                self._count("failed")
                time.sleep(min(2.0**attempts, 10.0))
                return
            # A bug, or a fault that outlived the retries: retrying may loop forever, so park
            # the batch (the gateway fails its step with this reason) and keep clean weights.
            self._attempts.pop(batch.batch_id, None)
            self.dead_letter(
                entry_id, raw, f"update failed after {attempts} attempt(s): {_short(exc)}"
            )
            return
        self._attempts.pop(batch.batch_id, None)

        metrics = dict(result.metrics)
        metrics["staleness"] = float(self.state.version - batch.weight_version)
        version = self.state.version + 1
        with self.lock:
            self.phase = "saving"
        t0 = time.perf_counter()
        try:
            self._save(version, batch, metrics, result.groups)
        except Exception as exc:
            if self.dist.sharded:
                raise RankFailure(f"saving version {version} failed: {exc}") from exc
            # The update is in memory only: drop it, keep the entry pending and retry later.
            log.exception("saving version %d failed", version)
            self._reload()
            self._recover_pending = True
            self._idle(error=f"save failed: {_short(exc)}")
            self._count("failed")
            time.sleep(1.0)
            return
        prom.SAVE_SECONDS.observe(time.perf_counter() - t0)
        if self.dist.is_main:
            self.announce(version)
            self._ack(entry_id)
            apply_retention(self.root, self.cfg.keep_last, self.cfg.keep_every)
        prom.VERSION.set(version)
        prom.record_step(metrics, result.groups)
        self._count("trained")
        with self.lock:
            self.last_step = {
                "version": version,
                "batch_id": batch.batch_id,
                "run_id": batch.run_id,
                "step": batch.step,
                "samples": len(batch.samples),
                "metrics": metrics,
                "groups": result.groups,
            }
        self._idle()
        log.info(
            "version %d from batch %s: loss %.4g, grad_norm %.3g, %.0f tok/s",
            version,
            batch.batch_id,
            metrics["loss"],
            metrics["grad_norm"],
            metrics["tokens_per_s"],
        )

    def _save(
        self,
        version: int,
        batch: RewardBatch,
        metrics: dict[str, float],
        groups: dict[str, dict[str, float]],
    ) -> None:
        assert self.updater is not None
        state = TrainerState(
            version=version,
            updates=self.state.updates + 1,
            batches={**self.state.batches, batch.batch_id: version},
            last_metrics={"metrics": metrics, "groups": groups},
        )
        extra = {
            "kind": "lora" if self.cfg.lora else "full",
            "base_version": 0,
            "batch_id": batch.batch_id,
            "run_id": batch.run_id,
            "step": batch.step,
            "generated_by_version": batch.weight_version,
            "metrics": metrics,
            "created_at": time.time(),
        }
        if self.dist.sharded:
            self._save_sharded(version, state, extra)
            return
        # Trainer state first, then the weights: a version never exists without its state.
        save_trainer_state(self.root, version, state, self.updater.optimizer)
        with untied_for_save(self.model):
            save_model_checkpoint(self.model, self.tokenizer, self.root, version, extra)
        self.state = state

    def _save_sharded(self, version: int, state: TrainerState, extra: dict[str, Any]) -> None:
        """Collective. The sharded state (model + moments) first, then rank 0 publishes the
        consolidated weights; the barrier makes every rank agree the version exists."""
        from services.trainer import sharded

        assert self.updater is not None
        root = self.updater.model
        sharded.save_sharded_state(
            self.root, version, state, root, self.updater.optimizer, self.dist
        )
        weights = sharded.full_state_dict(root)
        if self.dist.is_main:
            sharded.publish_consolidated(
                weights,
                self.model.config,
                getattr(self.model, "generation_config", None),
                self.tokenizer,
                self.root,
                version,
                extra,
            )
        del weights
        barrier(self.dist)
        self.state = state

    def _reload(self) -> None:
        try:
            self._load_latest()
        except Exception:
            log.exception("reloading the newest version failed")

    def _idle(self, error: str | None = None) -> None:
        with self.lock:
            self.phase, self.current = "idle", None
            if error:
                self.error = error

    # ---------------------------------------------------------------- status

    def backlog(self) -> dict[str, int]:
        cfg = self.cfg
        pending = 0
        undelivered = 0
        try:
            for g in self.redis.xinfo_groups(cfg.stream):
                if _text(g["name"]) == cfg.group:
                    pending = int(g["pending"])
                    last = _text(g["last-delivered-id"])
                    undelivered = len(self.redis.xrange(cfg.stream, f"({last}", "+", count=10000))
        except redis.ResponseError:  # no stream yet
            pass
        return {"pending": pending, "undelivered": undelivered, "total": pending + undelivered}

    def _refresh_backlog(self) -> None:
        prom.BACKLOG.set(self.backlog()["total"])

    def status(self) -> dict[str, Any]:
        backlog = self.backlog()
        with self.lock:
            return {
                "ready": self.ready,
                "phase": self.phase,
                "version": self.state.version,
                "updates": self.state.updates,
                "mode": "lora" if self.cfg.lora else "full",
                "backlog": backlog,
                "current": dict(self.current) if self.current else None,
                "last_step": self.last_step or self.state.last_metrics or None,
                "counts": dict(self.counts),
                "error": self.error,
                "redis_memory": self.redis_memory,
            }
