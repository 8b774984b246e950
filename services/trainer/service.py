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
from azr.settings import Settings
from services.trainer import metrics as prom
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
from services.trainer.schemas import BATCH_FIELD, RewardBatch
from services.trainer.state import (
    TrainerState,
    apply_retention,
    load_trainer_state,
    save_trainer_state,
)
from services.trainer.update import BatchRejected, Updater

log = logging.getLogger(__name__)


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

    # ---------------------------------------------------------------- setup

    def base_model_dir(self) -> Path:
        if self.cfg.model:
            return Path(self.cfg.model)
        from services.inference.model import resolve_model

        return resolve_model(self.settings)

    def setup(self) -> None:
        """Ensure version 0 exists, load the newest version and its optimizer state, create the
        consumer group and announce the current version for late subscribers."""
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
        self._load_latest()
        try:
            self.redis.xgroup_create(self.cfg.stream, self.cfg.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._catch_up_announcement()
        with self.lock:
            self.phase, self.ready = "idle", True

    def _latest_valid_version(self) -> int:
        for v in reversed(list_versions(self.root)):
            try:
                verify_checkpoint(version_dir(self.root, v))
                return v
            except ChecksumMismatch as exc:  # renames are atomic; this is disk damage
                log.error("skipping damaged version %d: %s", v, exc)
        raise RuntimeError(f"no valid checkpoint version under {self.root}")

    def _load_latest(self) -> None:
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
        )
        prom.VERSION.set(version)
        log.info("trainer at version %d (%s, %s)", version, "lora" if cfg.lora else "full", device)

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
        """Record `version` in Redis: the batch map, the versions stream, the latest key (only
        ever moving forward) and a pub/sub message. Safe to repeat."""
        body = self._announcement(version)
        text = json.dumps(body)
        pipe = self.redis.pipeline()
        if body["batch_id"]:
            pipe.hset(self.cfg.batch_versions_key, body["batch_id"], version)
        pipe.xadd(self.cfg.versions_stream, {"version": str(version), "announcement": text})
        pipe.execute()
        current = self.redis.get(self.cfg.latest_key)
        if current is None or json.loads(current).get("version", -1) < version:
            self.redis.set(self.cfg.latest_key, text)
        self.redis.publish(self.cfg.announce_channel, text)

    def _catch_up_announcement(self) -> None:
        current = self.redis.get(self.cfg.latest_key)
        if current is None or json.loads(current).get("version", -1) < self.state.version:
            self.announce(self.state.version)

    # ---------------------------------------------------------------- the loop

    def run(self, stop: threading.Event, block_ms: int = 1000) -> None:
        while not stop.is_set():
            try:
                self.poll_once(block_ms)
            except redis.ConnectionError as exc:
                log.warning("redis unavailable: %s", exc)
                self._loop_error(exc)
                stop.wait(1.0)
            except Exception as exc:  # keep serving; the entry stays pending and is retried
                log.exception("trainer loop error")
                self._loop_error(exc)
                stop.wait(1.0)

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
        for entry_id, fields in entries:
            self.handle(_text(entry_id), fields)
        self._refresh_backlog()
        return len(entries)

    def _ack(self, entry_id: str) -> None:
        self.redis.xack(self.cfg.stream, self.cfg.group, entry_id)

    def dead_letter(self, entry_id: str, raw: Any, reason: str) -> None:
        payload = _text(raw)[:100_000] if raw is not None else ""
        self.redis.xadd(
            self.cfg.dead_letter_stream,
            {"entry_id": entry_id, "reason": reason, "payload": payload},
        )
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
        except BatchRejected as exc:
            self._idle()
            self.dead_letter(entry_id, raw, str(exc))
            return
        except Exception as exc:
            # Not the batch's fault as far as we can tell, but retrying may loop forever:
            # park it in the dead-letter stream and reload clean weights.
            log.exception("update on batch %s failed", batch.batch_id)
            self._reload()
            self._idle(error=_short(exc))
            self.dead_letter(entry_id, raw, f"update failed: {_short(exc)}")
            return

        metrics = dict(result.metrics)
        metrics["staleness"] = float(self.state.version - batch.weight_version)
        version = self.state.version + 1
        with self.lock:
            self.phase = "saving"
        t0 = time.perf_counter()
        try:
            self._save(version, batch, metrics, result.groups)
        except Exception as exc:
            # The update is in memory only: drop it, keep the entry pending and retry later.
            log.exception("saving version %d failed", version)
            self._reload()
            self._recover_pending = True
            self._idle(error=f"save failed: {_short(exc)}")
            self._count("failed")
            time.sleep(1.0)
            return
        prom.SAVE_SECONDS.observe(time.perf_counter() - t0)
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
        # Trainer state first, then the weights: a version never exists without its state.
        save_trainer_state(self.root, version, state, self.updater.optimizer)
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
        with untied_for_save(self.model):
            save_model_checkpoint(self.model, self.tokenizer, self.root, version, extra)
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
            }
