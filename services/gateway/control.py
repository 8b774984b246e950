"""The seam between the public API and whatever drives runs (the loop's runner).

The API owns the run records (status transitions are written by the API after the control has
accepted them); the control owns the processes: threads running the loop, the inference engine's
weights, and the executor used to validate injected tasks.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class ControlError(Exception):
    """Base of the errors a control may raise; the API maps each to a 4xx/503 answer."""

    status_code = 409


class InvalidTransition(ControlError):
    """The run cannot go to the requested state (e.g. resuming a stopped run)."""

    status_code = 409


class UnknownVersion(ControlError):
    """No checkpoint exists for the requested weight version."""

    status_code = 404


class Unavailable(ControlError):
    """A service the control needs (executor, inference) did not answer."""

    status_code = 503


@runtime_checkable
class RunControl(Protocol):
    def start(self, run_id: int) -> None: ...

    def pause(self, run_id: int) -> None: ...

    def resume(self, run_id: int) -> None: ...

    def stop(self, run_id: int) -> None: ...

    def swap_weights(self, version: int) -> dict[str, Any]:
        """Tell inference to load `version`; returns what inference reported."""
        ...

    def validate_task(
        self, task_type: str, program: str, inputs: list[str], message: str | None
    ) -> dict[str, Any]:
        """Validate like a proposal, via the executor.

        Returns ``{"valid": bool, "outputs": [...], "reason": str | None, "status": str}``.
        """
        ...
