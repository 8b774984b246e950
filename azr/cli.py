"""The `azr` command line. Heavy modules are imported inside commands so `azr --help` is quick."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Absolute Zero self-play as services.", no_args_is_help=True)

# `azr serve NAME`: each service module exposes `serve(host, port, role)`.
SERVICE_MODULES = {
    "executor": "services.executor.main",
    "proposer": "services.inference.main",
    "solver": "services.inference.main",
    "inference": "services.inference.main",
    "trainer": "services.trainer.main",
    "gateway": "services.gateway.main",
}


@app.command()
def serve(
    service: str = typer.Argument(..., help=" | ".join(SERVICE_MODULES)),
    host: str | None = typer.Option(None, help="bind address (default from settings)"),
    port: int | None = typer.Option(None, help="port (default from settings)"),
) -> None:
    """Start one service in the foreground."""
    if service not in SERVICE_MODULES:
        raise typer.BadParameter(f"unknown service {service!r}; choose one of {list(SERVICE_MODULES)}")
    module = importlib.import_module(SERVICE_MODULES[service])
    module.serve(host=host, port=port, role=service)


@app.command()
def demo() -> None:
    """Run the executor demo: validate and verify a few programs in the sandbox."""
    from services.executor.demo import main

    main()


if __name__ == "__main__":
    app()
