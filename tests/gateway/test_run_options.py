"""`azr run` / `azr up --run`: `--set key=value` reaches the run's loop settings."""

from __future__ import annotations

import pytest
import typer

from services.gateway.cli_run import _overrides, parse_sets


def test_set_options_become_loop_settings() -> None:
    got = _overrides(
        sets=["solver_samples=4", "solver-baseline=task", 'task_types=["deduction"]'], steps=3
    )
    assert got == {
        "steps": 3,
        "solver_samples": 4,
        "solver_baseline": "task",
        "task_types": ["deduction"],
    }
    with pytest.raises(typer.BadParameter, match="key=value"):
        parse_sets(["solver_samples"])
