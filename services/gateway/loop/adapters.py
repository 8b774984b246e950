"""The orchestrator's ports over the real transports: the task store (SQLAlchemy), the trainer's
Redis stream and announcements, and the executor and inference HTTP APIs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from azr.common.checkpoints import ChecksumMismatch, list_versions, read_manifest, version_dir
from azr.common.retry import DEFAULT_POLICY, RetryPolicy, ServiceUnavailable, redis_retry
from azr.contracts import inference as wire
from azr.core.tasks import Answer, Proposal, Task, TaskType
from azr.loop.ports import (
    AnswerGen,
    Generation,
    NewTask,
    ProposalGen,
    Sampling,
    StoredTask,
    Validation,
)
from azr.loop.records import task_to_json
from azr.settings import Settings
from services.executor.client import ExecutorClient, ExecutorError
from services.gateway.db.models import TaskRecord
from services.gateway.store import TaskStore
from services.inference.client import InferenceClient, InferenceError

from .replicas import ReplicaSet

log = logging.getLogger("azr.loop")


class ServiceError(RuntimeError):
    """A service answered with an error the loop cannot work around."""


@contextmanager
def _service_errors(service: str, what: str) -> Iterator[None]:
    """The typed clients' failures as ServiceError naming the service, the route and the cause
    (the retries already spent where the service did not answer)."""
    try:
        yield
    except ServiceUnavailable as exc:
        raise ServiceError(str(exc)) from exc
    except ExecutorError as exc:
        raise ServiceError(f"{service} {what} answered {exc.status_code}: {exc.detail}") from exc
    except InferenceError as exc:
        raise ServiceError(f"{service} {what} answered {exc.status}: {exc.detail}") from exc
    except ValidationError as exc:
        raise ServiceError(f"{service} {what}: {exc}") from exc


# ---------------------------------------------------------------------- database
class StoreBuffers:
    def __init__(self, store: TaskStore, run_id: int) -> None:
        self.store = store
        self.run_id = run_id

    def snapshot(self, task_type: TaskType) -> list[StoredTask]:
        with self.store.sessions() as s:
            rows = s.execute(
                select(TaskRecord.id, TaskRecord.step).where(
                    TaskRecord.run_id == self.run_id, TaskRecord.task_type == task_type.value
                )
            ).all()
        steps = {int(r[0]): int(r[1]) for r in rows}
        return [
            StoredTask(tid, task, steps.get(tid, 0))
            for tid, task in self.store.buffer(self.run_id, task_type)
        ]

    def known_fingerprints(self, task_type: TaskType, fingerprints: list[str]) -> set[str]:
        with self.store.sessions() as s:
            found = s.scalars(
                select(TaskRecord.fingerprint).where(
                    TaskRecord.run_id == self.run_id,
                    TaskRecord.task_type == task_type.value,
                    TaskRecord.fingerprint.in_(fingerprints),
                )
            ).all()
        return set(found)

    def seed(self, tasks: list[Task]) -> int:
        return self.store.seed(self.run_id, tasks)

    def add(self, tasks: list[NewTask]) -> int:
        added = 0
        for n in tasks:
            task_id, duplicate = self.store.add_task(
                self.run_id,
                n.task,
                step=n.step,
                proposer_version=n.proposer_version,
                validation={"valid": True, "status": n.validation_status},
            )
            if task_id is not None and n.solve_rate is not None:
                self.store.record_solve_rate(task_id, n.solve_rate, n.n_rollouts)
            added += int(task_id is not None and not duplicate)
        return added


class StoreHistory:
    def __init__(self, store: TaskStore, run_id: int) -> None:
        self.store = store
        self.run_id = run_id

    def record_step(self, step: int, metrics: dict[str, Any]) -> None:
        self.store.record_step(self.run_id, step, metrics, metrics.get("groups", {}))
        self.store.set_current_step(self.run_id, step)

    def record_weights(self, version: int, path: str | None, step: int) -> None:
        if self.store.get_weight_version(version) is None:
            checksum = ""
            if path:
                try:
                    checksum = str(read_manifest(Path(path)).get("checksum", ""))
                except (ChecksumMismatch, OSError, ValueError):
                    checksum = ""
            self.store.record_weight_version(
                version, path or "", checksum, run_id=self.run_id, batch_id=None
            )
        self.store.mark_loaded(version)


# ---------------------------------------------------------------------- trainer
class RedisTrainer:
    """Publishes reward batches to the trainer's stream and reads its announced versions."""

    def __init__(self, redis: Any, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings

    @redis_retry
    def publish(self, batch: dict[str, Any]) -> str:
        from azr.contracts.trainer import RewardBatch, publish_reward_batch

        model = RewardBatch.model_validate({**batch, "run_id": str(batch["run_id"])})
        # A batch already on the stream (a replayed step) is not appended again; should the
        # check race a crash, the trainer still skips a batch id it has trained on.
        if self._on_stream(model.batch_id) or self.redis.hexists(
            self.settings.trainer.batch_versions_key, model.batch_id
        ):
            return "duplicate"
        return publish_reward_batch(self.redis, self.settings, model)

    def _on_stream(self, batch_id: str, window: int = 200) -> bool:
        entries = self.redis.xrevrange(self.settings.trainer.stream, count=window)
        for _, fields in entries:
            value = fields.get(b"batch_id", fields.get("batch_id"))
            if isinstance(value, bytes):
                value = value.decode()
            if value == batch_id:
                return True
        return False

    @redis_retry
    def batch_states(self, batch_ids: list[str]) -> dict[str, str]:
        cfg = self.settings.trainer
        trained = self.redis.hmget(cfg.batch_versions_key, batch_ids)
        dead = self.redis.hmget(cfg.dead_batches_key, batch_ids)
        # acknowledged entries are deleted, so the stream holds what is still to train
        queued: set[str] = set()
        for _, fields in self.redis.xrevrange(cfg.stream, count=1000):
            value = fields.get(b"batch_id", fields.get("batch_id"))
            queued.add(value.decode() if isinstance(value, bytes) else str(value))
        out: dict[str, str] = {}
        for bid, version, parked in zip(batch_ids, trained, dead, strict=True):
            if version is not None:
                out[bid] = "trained"
            elif parked is not None:
                out[bid] = f"dead: {_dead_reason(parked)}"
            else:
                out[bid] = "queued" if bid in queued else "lost"
        return out

    @redis_retry
    def latest_version(self) -> tuple[int, str | None]:
        raw = self.redis.get(self.settings.trainer.latest_key)
        if raw is not None:
            try:
                data = json.loads(raw)
            except ValueError:
                data = raw
            if isinstance(data, dict):
                version = int(data.get("version", 0))
                path = data.get("path") or str(version_dir(self.settings.checkpoint_dir, version))
                return version, str(path)
            version = int(data)
            return version, str(version_dir(self.settings.checkpoint_dir, version))
        # no announcement yet: the newest complete checkpoint on disk, if any
        versions = list_versions(self.settings.checkpoint_dir)
        if versions:
            return versions[-1], str(version_dir(self.settings.checkpoint_dir, versions[-1]))
        return 0, None


def _dead_reason(raw: Any) -> str:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        return str(json.loads(text).get("reason", text))
    except (ValueError, AttributeError):
        return text


# ---------------------------------------------------------------------- executor
class HttpExecutor:
    def __init__(
        self,
        url: str,
        timeout_s: float = 600.0,
        chunk: int = 256,
        token: str | None = None,
        retry: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.client = ExecutorClient(url, timeout_s=timeout_s, token=token, retry=retry)
        self.chunk = chunk

    def validate(
        self, items: list[tuple[TaskType, str, list[str], str | None]]
    ) -> list[Validation]:
        out: list[Validation] = []
        for i in range(0, len(items), self.chunk):
            part = [
                {"task_type": tt.value, "program": program, "inputs": inputs, "message": message}
                for tt, program, inputs, message in items[i : i + self.chunk]
            ]
            with _service_errors("executor", "POST /v1/validate"):
                results = self.client.validate(part)
            out.extend(Validation(r.valid, r.status, tuple(r.outputs), r.reason) for r in results)
        return out

    def verify(self, tasks: list[Task], answers: list[Answer]) -> list[bool]:
        out: list[bool] = []
        pairs = list(zip(tasks, answers, strict=True))
        for i in range(0, len(pairs), self.chunk):
            part = [_verify_item(t, a) for t, a in pairs[i : i + self.chunk]]
            with _service_errors("executor", "POST /v1/verify"):
                out.extend(r.correct for r in self.client.verify(part))
        return out

    def close(self) -> None:
        self.client.close()


def _verify_item(task: Task, answer: Answer) -> dict[str, Any]:
    item: dict[str, Any] = {
        "task_type": task.task_type.value,
        "program": task.source,
        "answer": answer.value,
    }
    if task.task_type == TaskType.INDUCTION:
        item["hidden"] = [{"input": i, "output": o} for i, o in task.hidden_pairs()]
        if task.imports:
            item["imports"] = list(task.imports)
    else:
        item["input"] = task.input
        item["output"] = task.output
    return item


# ---------------------------------------------------------------------- inference
def _sampling(s: Sampling) -> wire.Sampling:
    return wire.Sampling(
        temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed
    )


def _tasks(tasks: list[Task]) -> list[wire.TaskIn]:
    return [wire.TaskIn.model_validate(task_to_json(t)) for t in tasks]


def _gen_fields(g: wire.GenerationOut, sampling: Sampling) -> dict[str, Any]:
    return {
        "temperature": sampling.temperature,
        "text": g.text,
        "prompt_token_ids": g.prompt_token_ids,
        "completion_token_ids": g.completion_token_ids,
        "logprobs": g.logprobs,
        "weight_version": g.version,
        "answer_closed": g.answer_closed,
    }


class HttpInference:
    """The proposer and solver routes (`/v1/propose`, `/v1/solve`) and `/v1/weights`, through
    the inference service's typed client.

    Each proposal prompt shows its own references, so proposals are requested one prompt at a
    time, several in flight at once (the engine batches concurrent requests). With `replicas`
    every request goes to one of several identical inference services and a weight swap loads
    all of them before it returns (replicas.py); their answers are read into the same schemas.
    """

    def __init__(
        self,
        proposer_url: str,
        solver_url: str,
        token: str | None,
        *,
        induction_inputs: int = 10,
        concurrency: int = 16,
        timeout_s: float = 1800.0,
        replicas: list[str] | None = None,
        retry: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        # the inference service token (AZR_SERVICE_TOKEN); None where it runs without one
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.replicas = ReplicaSet(replicas, headers, timeout_s) if replicas else None
        opts: dict[str, Any] = {"token": token, "timeout": timeout_s, "retry": retry}
        self.proposer = InferenceClient(proposer_url, **opts)
        self.solver = InferenceClient(solver_url, **opts)
        self.induction_inputs = induction_inputs
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="azr-infer")
        self.chunk = concurrency

    def propose(
        self, task_type: TaskType, references: list[list[Task]], sampling: Sampling
    ) -> list[ProposalGen]:
        def one(refs: list[Task]) -> ProposalGen:
            with _service_errors("inference", "POST /v1/propose"):
                request = wire.ProposeRequest(
                    task_type=task_type,
                    references=_tasks(refs),
                    n=1,
                    n_inputs=self.induction_inputs,
                    sampling=_sampling(sampling),
                )
                if self.replicas is not None:
                    data = self.replicas.post("/v1/propose", _json(request))
                    response = wire.ProposeResponse.model_validate(data)
                else:
                    response = self.proposer.propose(request)
            p = response.proposals[0]
            proposal = Proposal(
                task_type=task_type,
                program=p.program,
                inputs=p.inputs,
                message=p.message,
                imports=p.imports,
                format_ok=p.format_ok,
                error=p.error,
            )
            second = p.continuation
            return ProposalGen(
                **_gen_fields(p, sampling),
                proposal=proposal,
                references=list(refs),
                continuation=Generation(**_gen_fields(second, sampling)) if second else None,
            )

        return list(self.pool.map(one, references))

    def solve(self, tasks: list[Task], n: int, sampling: Sampling) -> list[list[AnswerGen]]:
        def chunk(part: list[Task]) -> list[list[AnswerGen]]:
            with _service_errors("inference", "POST /v1/solve"):
                request = wire.SolveRequest(tasks=_tasks(part), n=n, sampling=_sampling(sampling))
                if self.replicas is not None:
                    data = self.replicas.post("/v1/solve", _json(request))
                    response = wire.SolveResponse.model_validate(data)
                else:
                    response = self.solver.solve(request)
            # a task the engine could not sample (e.g. its prompt is too long) has no answers
            return [
                [
                    AnswerGen(
                        **_gen_fields(a, sampling),
                        answer=Answer(task.task_type, a.value, a.format_ok, a.error),
                    )
                    for a in result.answers
                ]
                for task, result in zip(part, response.results, strict=True)
            ]

        parts = [tasks[i : i + self.chunk] for i in range(0, len(tasks), self.chunk)]
        return [g for part in self.pool.map(chunk, parts) for g in part]

    def current_version(self) -> int:
        if self.replicas is not None:
            return self.replicas.current_version()
        with _service_errors("inference", "GET /v1/weights"):
            return self.solver.weights().version

    def load_weights(self, version: int, path: str) -> dict[str, Any]:
        if self.replicas is not None:
            return self.replicas.load_all(version, path)
        # loading the same version twice is a no-op, so a weight load is retried too
        with _service_errors("inference", "POST /v1/weights"):
            result = self.solver.load_weights(version, path).model_dump()
        if self.proposer.base_url != self.solver.base_url:
            with _service_errors("proposer", "POST /v1/weights"):
                self.proposer.load_weights(version, path)
        return result

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.replicas is not None:
            self.replicas.close()
        self.proposer.close()
        self.solver.close()


def _json(request: BaseModel) -> dict[str, Any]:
    return request.model_dump(mode="json", exclude_none=True)
