"""`azr tasks ...` and `azr weights ...`: the task-buffer and weight operations over the gateway's
REST API (so they work against a local stack or a cluster alike)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

tasks_app = typer.Typer(help="Inspect and steer the task buffers.", no_args_is_help=True)
weights_app = typer.Typer(help="Weight versions: current, history, swap.", no_args_is_help=True)

UrlOpt = typer.Option(None, "--url", envvar="AZR_GATEWAY_URL", help="gateway base URL")
TokenOpt = typer.Option(None, "--token", envvar="AZR_API_TOKEN", help="API bearer token")
JsonOpt = typer.Option(False, "--json", help="print raw JSON")


def _client(url: str | None, token: str | None) -> Any:
    import httpx

    from azr.settings import get_settings

    settings = get_settings()
    base = url or f"http://{settings.gateway_host}:{settings.gateway_port}"
    headers = {"Authorization": f"Bearer {token or settings.api_token}"}
    return httpx.Client(base_url=base, headers=headers, timeout=60)


def _fail(message: str) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _call(url: str | None, token: str | None, method: str, path: str, **kw: Any) -> Any:
    import httpx

    try:
        with _client(url, token) as client:
            res = client.request(method, path, **kw)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the gateway: {exc}")
    if res.status_code >= 400:
        try:
            detail = res.json().get("detail", res.text)
        except ValueError:
            detail = res.text
        _fail(f"HTTP {res.status_code}: {detail}")
    return res.json()


def _short(text: str, width: int = 60) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


@tasks_app.command("list")
def list_tasks(
    run: int | None = typer.Option(None, help="run id"),
    task_type: str | None = typer.Option(None, "--type", help="deduction | abduction | induction"),
    status: str | None = typer.Option(
        None, help="active | seed | injected | quarantined | evicted"
    ),
    source: str | None = typer.Option(None, help="proposed | seed | injected"),
    step_min: int | None = typer.Option(None),
    step_max: int | None = typer.Option(None),
    q: str | None = typer.Option(None, "--search", "-q", help="text in program or message"),
    limit: int = typer.Option(20),
    offset: int = typer.Option(0),
    url: str | None = UrlOpt,
    token: str | None = TokenOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List tasks, newest first."""
    params = {
        k: v
        for k, v in {
            "run_id": run,
            "task_type": task_type,
            "status": status,
            "source": source,
            "step_min": step_min,
            "step_max": step_max,
            "q": q,
            "limit": limit,
            "offset": offset,
        }.items()
        if v is not None
    }
    data = _call(url, token, "GET", "/v1/tasks", params=params)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tasks {offset + 1}-{offset + len(data['items'])} of {data['total']}")
    for col in ("id", "run", "type", "step", "status", "solve", "program", "input -> output"):
        table.add_column(col)
    for t in data["items"]:
        solve = "-" if t["solve_rate"] is None else f"{t['solve_rate']:.2f}"
        pair = f"{t['inputs'][0]} -> {t['outputs'][0]}" if t["inputs"] else ""
        table.add_row(
            str(t["id"]),
            str(t["run_id"]),
            t["task_type"],
            str(t["step"]),
            t["status"],
            solve,
            _short(t["program"], 50),
            _short(pair, 40),
        )
    Console().print(table)


@tasks_app.command("show")
def show_task(task_id: int, url: str | None = UrlOpt, token: str | None = TokenOpt) -> None:
    """Show one task with its lineage."""
    t = _call(url, token, "GET", f"/v1/tasks/{task_id}")
    typer.echo(
        f"task {t['id']}  run {t['run_id']}  {t['task_type']}  step {t['step']}  "
        f"{t['status']} ({t['source']})  proposer v{t['proposer_weight_version']}"
    )
    if t["message"]:
        typer.echo(f"message: {t['message']}")
    typer.echo(t["program"])
    for inp, out in zip(t["inputs"], t["outputs"], strict=False):
        typer.echo(f"  f({inp}) -> {out}")
    typer.echo(f"validation: {json.dumps(t['validation'])}")
    if t["solve_rate"] is not None:
        typer.echo(f"solve rate: {t['solve_rate']:.3f} over {t['n_solves']}")


@tasks_app.command("inject")
def inject_task(
    run: int = typer.Option(..., help="run id"),
    task_type: str = typer.Option(..., "--type", help="deduction | abduction | induction"),
    program: Path = typer.Option(..., exists=True, dir_okay=False, help="file with `def f(...)`"),
    inputs: list[str] = typer.Option(..., "--input", "-i", help="argument list (repeatable)"),
    message: str | None = typer.Option(None, help="induction: the message for the solver"),
    url: str | None = UrlOpt,
    token: str | None = TokenOpt,
) -> None:
    """Add a hand-written task (validated by the executor like a proposal)."""
    body = {
        "run_id": run,
        "task_type": task_type,
        "program": program.read_text(),
        "inputs": inputs,
        "message": message,
    }
    t = _call(url, token, "POST", "/v1/tasks", json=body)
    typer.echo(f"stored task {t['id']}; gold outputs: {t['outputs']}")


@tasks_app.command("quarantine")
def quarantine_task(
    task_id: int,
    reason: str = typer.Option(..., help="why (kept with the task)"),
    url: str | None = UrlOpt,
    token: str | None = TokenOpt,
) -> None:
    """Take a task out of its buffer."""
    t = _call(url, token, "POST", f"/v1/tasks/{task_id}/quarantine", json={"reason": reason})
    typer.echo(f"task {t['id']} is {t['status']}")


@tasks_app.command("export")
def export_tasks(
    out: Path | None = typer.Option(None, "--out", "-o", help="file (default: stdout)"),
    run: int | None = typer.Option(None, help="run id"),
    task_type: str | None = typer.Option(None, "--type"),
    status: str | None = typer.Option(None),
    url: str | None = UrlOpt,
    token: str | None = TokenOpt,
) -> None:
    """Export tasks as JSON Lines (streamed)."""
    import httpx

    params = {
        k: v
        for k, v in {"run_id": run, "task_type": task_type, "status": status}.items()
        if v is not None
    }
    sink = out.open("w") if out else sys.stdout
    n = 0
    try:
        with (
            _client(url, token) as client,
            client.stream("GET", "/v1/tasks/export", params=params) as res,
        ):
            if res.status_code >= 400:
                res.read()
                _fail(f"HTTP {res.status_code}: {res.text}")
            for line in res.iter_lines():
                if line:
                    sink.write(line + "\n")
                    n += 1
    except httpx.HTTPError as exc:
        _fail(f"cannot reach the gateway: {exc}")
    finally:
        if out:
            sink.close()
    if out:
        typer.echo(f"wrote {n} tasks to {out}")


@weights_app.command("current")
def weights_current(url: str | None = UrlOpt, token: str | None = TokenOpt) -> None:
    """The loaded and the latest trained version."""
    data = _call(url, token, "GET", "/v1/weights/current")
    for key in ("current", "latest"):
        w = data[key]
        typer.echo(
            f"{key}: "
            + (
                "none"
                if w is None
                else f"v{w['version']} {w['path']} (loaded {w['loaded_at'] or 'never'})"
            )
        )


@weights_app.command("history")
def weights_history(
    run: int | None = typer.Option(None, help="run id"),
    limit: int = typer.Option(50),
    url: str | None = UrlOpt,
    token: str | None = TokenOpt,
) -> None:
    """Trained versions, newest first."""
    params: dict[str, Any] = {"limit": limit} | ({"run_id": run} if run else {})
    data = _call(url, token, "GET", "/v1/weights", params=params)
    for w in data["items"]:
        typer.echo(
            f"v{w['version']}\trun {w['run_id']}\tbatch {w['batch_id']}\t"
            f"created {w['created_at']}\tloaded {w['loaded_at'] or '-'}"
        )


@weights_app.command("swap")
def weights_swap(version: int, url: str | None = UrlOpt, token: str | None = TokenOpt) -> None:
    """Load a version into inference."""
    data = _call(url, token, "POST", "/v1/weights/swap", json={"version": version})
    typer.echo(f"loaded v{data['version']}: {json.dumps(data['result'])}")
