"""The orchestrator's ports over the real transports: the task store (SQLAlchemy), the trainer's
Redis stream and announcements, and the executor and inference HTTP APIs."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from azr.common.checkpoints import ChecksumMismatch, list_versions, read_manifest, version_dir
from azr.core.tasks import Answer, Proposal, Task, TaskType
from azr.settings import Settings
from services.gateway.db.models import TaskRecord
from services.gateway.store import TaskStore

from .ports import AnswerGen, NewTask, ProposalGen, Sampling, StoredTask, Validation
from .records import task_to_json

log = logging.getLogger("azr.loop")


class ServiceError(RuntimeError):
    """A service answered with an error the loop cannot work around."""


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

    def publish(self, batch: dict[str, Any]) -> str:
        from services.trainer.schemas import RewardBatch, publish_reward_batch

        model = RewardBatch.model_validate({**batch, "run_id": str(batch["run_id"])})
        # A batch already on the stream (a replayed step) is not appended again; should the
        # check race a crash, the trainer still skips a batch id it has trained on.
        if self._on_stream(model.batch_id):
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


# ---------------------------------------------------------------------- executor
def _check(resp: httpx.Response, what: str) -> Any:
    if resp.status_code >= 400:
        raise ServiceError(f"{what} answered {resp.status_code}: {resp.text[:500]}")
    return resp.json()


class HttpExecutor:
    def __init__(self, url: str, timeout_s: float = 600.0, chunk: int = 256) -> None:
        self.client = httpx.Client(base_url=url, timeout=timeout_s)
        self.chunk = chunk

    def validate(
        self, items: list[tuple[TaskType, str, list[str], str | None]]
    ) -> list[Validation]:
        out: list[Validation] = []
        for i in range(0, len(items), self.chunk):
            body = {
                "items": [
                    {
                        "task_type": tt.value,
                        "program": program,
                        "inputs": inputs,
                        "message": message,
                    }
                    for tt, program, inputs, message in items[i : i + self.chunk]
                ]
            }
            data = _check(self.client.post("/v1/validate", json=body), "executor /v1/validate")
            out.extend(
                Validation(
                    bool(r["valid"]),
                    str(r.get("status", "")),
                    tuple(r.get("outputs") or ()),
                    r.get("reason"),
                )
                for r in data["results"]
            )
        return out

    def verify(self, tasks: list[Task], answers: list[Answer]) -> list[bool]:
        out: list[bool] = []
        pairs = list(zip(tasks, answers, strict=True))
        for i in range(0, len(pairs), self.chunk):
            body = {"items": [_verify_item(t, a) for t, a in pairs[i : i + self.chunk]]}
            data = _check(self.client.post("/v1/verify", json=body), "executor /v1/verify")
            out.extend(bool(r["correct"]) for r in data["results"])
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
def _sampling_json(s: Sampling) -> dict[str, Any]:
    out: dict[str, Any] = {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "max_tokens": s.max_tokens,
    }
    if s.seed is not None:
        out["seed"] = s.seed
    return out


def _gen_fields(d: dict[str, Any], default_version: int) -> dict[str, Any]:
    return {
        "text": str(d.get("text", "")),
        "prompt_token_ids": list(d.get("prompt_token_ids") or []),
        "completion_token_ids": list(d.get("completion_token_ids") or d.get("token_ids") or []),
        "logprobs": [float(x) for x in (d.get("logprobs") or d.get("sampling_logprobs") or [])],
        "weight_version": int(d.get("weight_version", d.get("version", default_version))),
        "answer_closed": bool(d.get("answer_closed", False)),
    }


class HttpInference:
    """The proposer and solver routes (`/v1/propose`, `/v1/solve`) and `/v1/weights`.

    Each proposal prompt shows its own references, so proposals are requested one prompt at a
    time, several in flight at once (the engine batches concurrent requests).
    """

    def __init__(
        self,
        proposer_url: str,
        solver_url: str,
        token: str,
        *,
        induction_inputs: int = 10,
        concurrency: int = 16,
        timeout_s: float = 1800.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        self.proposer = httpx.Client(base_url=proposer_url, timeout=timeout_s, headers=headers)
        self.solver = httpx.Client(base_url=solver_url, timeout=timeout_s, headers=headers)
        self.induction_inputs = induction_inputs
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="azr-infer")
        self.chunk = concurrency

    def propose(
        self, task_type: TaskType, references: list[list[Task]], sampling: Sampling
    ) -> list[ProposalGen]:
        def one(refs: list[Task]) -> ProposalGen:
            body = {
                "task_type": task_type.value,
                "references": [task_to_json(t) for t in refs],
                "n": 1,
                "n_inputs": self.induction_inputs,
                "sampling": _sampling_json(sampling),
            }
            data = _check(self.proposer.post("/v1/propose", json=body), "proposer /v1/propose")
            sample = data["samples"][0] if "samples" in data else data["proposals"][0]
            p = sample.get("proposal", sample)
            proposal = Proposal(
                task_type=task_type,
                program=p.get("program"),
                inputs=list(p.get("inputs") or []),
                message=p.get("message"),
                imports=list(p.get("imports") or []),
                format_ok=bool(p.get("format_ok", False)),
                error=p.get("error"),
            )
            version = int(data.get("weight_version", data.get("version", 0)))
            return ProposalGen(
                **_gen_fields(sample, version), proposal=proposal, references=list(refs)
            )

        return list(self.pool.map(one, references))

    def solve(self, tasks: list[Task], n: int, sampling: Sampling) -> list[list[AnswerGen]]:
        def chunk(part: list[Task]) -> list[list[AnswerGen]]:
            body = {
                "tasks": [task_to_json(t) for t in part],
                "n": n,
                "sampling": _sampling_json(sampling),
            }
            data = _check(self.solver.post("/v1/solve", json=body), "solver /v1/solve")
            version = int(data.get("weight_version", data.get("version", 0)))
            out: list[list[AnswerGen]] = []
            for task, per_task in zip(part, data["results"], strict=True):
                # a task the engine could not sample (e.g. its prompt is too long) has no answers
                samples = per_task.get("answers") or per_task.get("samples") or []
                gens = []
                for sample in samples:
                    a = sample.get("answer", sample)
                    answer = Answer(
                        task.task_type,
                        str(a.get("value") or ""),
                        bool(a.get("format_ok", False)),
                        a.get("error"),
                    )
                    gens.append(AnswerGen(**_gen_fields(sample, version), answer=answer))
                out.append(gens)
            return out

        parts = [tasks[i : i + self.chunk] for i in range(0, len(tasks), self.chunk)]
        return [g for part in self.pool.map(chunk, parts) for g in part]

    def current_version(self) -> int:
        data = _check(self.solver.get("/v1/weights"), "inference GET /v1/weights")
        return int(data.get("version", 0))

    def load_weights(self, version: int, path: str) -> dict[str, Any]:
        body = {"version": version, "path": path}
        result: dict[str, Any] = _check(
            self.solver.post("/v1/weights", json=body), "inference POST /v1/weights"
        )
        if self.proposer.base_url != self.solver.base_url:
            _check(self.proposer.post("/v1/weights", json=body), "proposer POST /v1/weights")
        return result

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.proposer.close()
        self.solver.close()
