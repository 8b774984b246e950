"""The import graph has no arrow back up (docs/architecture.md).

Every module's imports are read with `ast` (nothing is imported), so a lazy import inside a
function counts the same as one at the top. The layers, bottom to top:

    azr.core, azr.settings  ->  azr.contracts, azr.common  ->  azr.loop  ->  services.*  ->  services.cli

A service may use another service only through `azr.contracts` and that service's typed client
(`services.<name>.client`). The proposer and solver routers are part of the inference service
(its app mounts them), so they count as inference.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What each azr package may import inside azr (besides itself).
AZR_ALLOWED: dict[str, set[str]] = {
    "core": {"settings"},
    "settings": set(),
    "contracts": {"core", "settings"},
    "common": {"core", "settings"},
    "loop": {"core", "settings", "contracts", "common"},
    "__init__": set(),
}
# Packages that belong to another service (routers mounted by the inference app).
SERVICE_OF = {"proposer": "inference", "solver": "inference"}
# The composition root: the CLI wires every service together.
ROOTS = {"services.cli"}
# Crossings not yet removed, each with why it is still there. The test fails when one is gone
# (so the list stays true) and on any crossing not listed here.
KNOWN: dict[tuple[str, str], str] = {
    # `azr eval` runs its own engine in-process; one shared make_engine is still to come
    ("services.evaluation.engines", "services.inference.engine"): "in-process eval engine",
    ("services.evaluation.engines", "services.inference.prompting"): "in-process eval engine",
    ("services.evaluation.engines", "services.inference.main"): "the service's engine factory",
    ("services.evaluation.harness", "services.inference.prompting"): "chat template rendering",
    ("services.evaluation.prompting", "services.inference.prompting"): "chat template rendering",
    # `azr eval` starts a private executor when none is configured
    ("services.evaluation.executor_proc", "services.executor.api"): "private executor",
    ("services.evaluation.executor_proc", "services.executor.main"): "private executor",
    # the gateway hands the CRUXEval subset monitor to the loop as its BenchEval port
    ("services.gateway.main", "services.evaluation.monitor"): "in-process bench monitor",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    """Absolute names of every azr/services module this file imports."""
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import sub` imports a module when `sub` is one
            subs = [f"{target}.{a.name}" for a in node.names if _exists(f"{target}.{a.name}")]
            out.extend(subs or [target])
    return [t for t in out if t.split(".")[0] in ("azr", "services")]


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _modules() -> list[Path]:
    return sorted(p for d in ("azr", "services") for p in (ROOT / d).rglob("*.py"))


def _service(module: str) -> str:
    name = module.split(".")[1] if "." in module else ""
    return SERVICE_OF.get(name, name)


def _offences() -> tuple[list[str], set[tuple[str, str]]]:
    bad: list[str] = []
    crossings: set[tuple[str, str]] = set()
    for path in _modules():
        src = _module_name(path)
        for target in _imports(path):
            if not _exists(target):
                bad.append(f"{src} -> {target} (no such module)")
                continue
            if src.startswith("azr"):
                if target.startswith("services"):
                    bad.append(f"{src} -> {target} (azr imports a service)")
                    continue
                mine = [*src.split("."), "__init__"][1]
                theirs = [*target.split("."), "__init__"][1]
                if mine != theirs and theirs not in AZR_ALLOWED.get(mine, set()):
                    bad.append(f"{src} -> {target} (azr.{mine} below azr.{theirs})")
            elif target.startswith("services") and src not in ROOTS:
                if target in ROOTS:
                    bad.append(f"{src} -> {target} (a service imports the CLI)")
                elif _service(src) != _service(target) and not target.endswith(".client"):
                    crossings.add((src, target))
    return bad, crossings


def test_no_import_runs_back_up() -> None:
    bad, crossings = _offences()
    bad += [f"{s} -> {t} (another service's internals)" for s, t in crossings - KNOWN.keys()]
    assert not bad, "imports that run back up:\n" + "\n".join(sorted(bad))


def test_known_crossings_still_exist() -> None:
    _, crossings = _offences()
    gone = sorted(f"{s} -> {t}" for s, t in KNOWN.keys() - crossings)
    assert not gone, "remove these from KNOWN, they are gone:\n" + "\n".join(gone)


def test_the_checker_sees_an_arrow_back_up() -> None:
    # the reader itself: a lazy import inside a function is found and resolved
    assert "azr.settings" not in _imports(ROOT / "azr" / "core" / "tasks.py")
    assert "azr.settings" in _imports(ROOT / "azr" / "core" / "checks.py")
    assert ("services.gateway.main", "services.evaluation.monitor") in _offences()[1]
