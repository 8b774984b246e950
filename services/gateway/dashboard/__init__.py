"""The dashboard: one static page (no external assets; the network may be closed) that polls the
public API and draws its charts as hand-written SVG."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

# The assets sit beside this module so the package data rules ship them.
STATIC = Path(__file__).resolve().parent
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

dashboard_router = APIRouter(include_in_schema=False)


@dashboard_router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@dashboard_router.get("/dashboard/{name}")
def asset(name: str) -> FileResponse:
    path = STATIC / name
    # Only the files shipped here, by plain name (no sub-paths, no traversal).
    if "/" in name or path.suffix not in TYPES or not path.is_file():
        raise HTTPException(404, f"no dashboard asset {name!r}")
    return FileResponse(path, media_type=TYPES[path.suffix])
