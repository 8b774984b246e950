"""A small Dockerfile reader and the checks CI runs on deploy/Dockerfile (no Docker engine here).

Each check returns a list of problems so tests can also show it failing on a broken file.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
BUILD_SCRIPT = REPO / "deploy" / "build-images.sh"

# Packages that put a compiler or a build toolchain into an image.
COMPILER_PACKAGES = re.compile(
    r"^(gcc(-\d+)?|g\+\+(-\d+)?|cpp|clang(-\d+)?|build-essential|make|cmake|ninja-build|"
    r"musl-dev|libc6?-dev|python3?(\.\d+)?-dev|.*-dev|rustc|cargo|golang(-go)?|gfortran)$"
)


@dataclass
class Instruction:
    op: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def ops(self, op: str) -> list[Instruction]:
        return [i for i in self.instructions if i.op == op]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def chain(self, name: str) -> list[Stage]:
        """The stage and the in-file stages it builds FROM, outermost last."""
        out = []
        current: Stage | None = self.stage(name)
        while current is not None:
            out.append(current)
            parent = current.base
            current = next((s for s in self.stages if s.name == parent), None)
        return out

    def external_base(self, name: str) -> str:
        base = self.chain(name)[-1].base
        return re.sub(
            r"\$\{(\w+)\}|\$(\w+)", lambda mt: self.global_args.get(mt[1] or mt[2], mt[0]), base
        )


def parse(text: str) -> Dockerfile:
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append((start, buf + line))
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical:
        op, _, args = line.partition(" ")
        op = op.upper()
        args = args.strip()
        if op == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            if op == "ARG":
                key, _, default = args.partition("=")
                global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(op, args, number))
    return Dockerfile(global_args, stages)


def build_targets(script: str) -> dict[str, list[str]]:
    """The `targets=(...)` arrays of build-images.sh, per image set."""
    return {
        mt[1]: mt[2].split()
        for mt in re.finditer(r"^\s*(\w+)\)\s*targets=\(([^)]*)\)", script, re.MULTILINE)
    }


def installed_packages(run: str) -> list[str]:
    """Package names given to apt-get install / apk add in one RUN line."""
    packages = []
    for command in re.split(r"&&|;|\|\|", run):
        words = shlex.split(command)
        for i, word in enumerate(words):
            if word in ("install", "add") and i > 0 and words[i - 1] in ("apt-get", "apt", "apk"):
                packages += [w for w in words[i + 1 :] if not w.startswith("-")]
    return packages


def _final_user(chain: list[Stage]) -> str | None:
    for stage in chain:  # innermost first
        users = stage.ops("USER")
        if users:
            return users[-1].args
    return None


def user_problems(df: Dockerfile, target: str) -> list[str]:
    user = _final_user(df.chain(target))
    if user is None:
        return [f"{target}: no USER (runs as root)"]
    name = user.split(":")[0]
    resolved = re.sub(r"\$\{(\w+)\}", lambda mt: _arg_default(df, target, mt[1]), name)
    if resolved in ("root", "0", ""):
        return [f"{target}: USER {user} is root"]
    return []


def _arg_default(df: Dockerfile, target: str, key: str) -> str:
    for stage in df.chain(target):
        for ins in stage.ops("ARG"):
            k, _, v = ins.args.partition("=")
            if k == key and v:
                return v
    return df.global_args.get(key, "")


def healthcheck_problems(df: Dockerfile, target: str) -> list[str]:
    checks = [i for s in df.chain(target) for i in s.ops("HEALTHCHECK")]
    if not checks:
        return [f"{target}: no HEALTHCHECK"]
    if checks[0].args.strip().upper() == "NONE":
        return [f"{target}: HEALTHCHECK NONE"]
    return []


def compiler_problems(df: Dockerfile, target: str) -> list[str]:
    problems = []
    for stage in df.chain(target):
        if stage.name and stage.name.startswith("build"):
            problems.append(f"{target}: runtime stage builds FROM the {stage.name} stage")
        for ins in stage.ops("RUN"):
            for pkg in installed_packages(ins.args):
                if COMPILER_PACKAGES.match(pkg):
                    problems.append(f"{target}: installs {pkg} (line {ins.line})")
    return problems


def arg_scope_problems(df: Dockerfile) -> list[str]:
    """A stage may use only ARGs it declares (global ARGs reach FROM lines only)."""
    problems = []
    for stage in df.stages:
        declared: set[str] = set()
        for ins in stage.instructions:
            if ins.op == "ARG":
                declared.add(ins.args.partition("=")[0])
                continue
            if ins.op in ("RUN", "CMD", "HEALTHCHECK", "ENTRYPOINT"):
                continue  # shell variables there may be ENV or the shell's own
            for mt in re.finditer(r"\$\{(\w+)\}", ins.args):
                if mt[1] not in declared and not _declared_env(stage, mt[1]):
                    problems.append(
                        f"{stage.name}: {ins.op} line {ins.line} uses undeclared ${{{mt[1]}}}"
                    )
        for ins in stage.ops("RUN"):
            for mt in re.finditer(r"\$\{(\w+)\}", ins.args):
                if mt[1] in df.global_args and mt[1] not in declared:
                    problems.append(
                        f"{stage.name}: RUN line {ins.line} uses global ARG {mt[1]} without redeclaring it"
                    )
    return problems


def _declared_env(stage: Stage, key: str) -> bool:
    return any(re.search(rf"(^|\s){key}=", i.args) for i in stage.ops("ENV"))


def copy_source_problems(df: Dockerfile, dockerignore: str) -> list[str]:
    """COPY sources from the context exist and are not excluded by the dockerignore file."""
    allowed = [line[1:].rstrip("/*") for line in dockerignore.splitlines() if line.startswith("!")]
    problems = []
    for stage in df.stages:
        for ins in stage.ops("COPY"):
            if "--from=" in ins.args:
                continue
            words = [w for w in ins.args.split() if not w.startswith("--")]
            for src in words[:-1]:
                if not (REPO / src).exists():
                    problems.append(f"COPY {src}: no such path")
                elif not any(src == a or src.startswith(a + "/") for a in allowed):
                    problems.append(f"COPY {src}: excluded by the dockerignore file")
    return problems
