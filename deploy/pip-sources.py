#!/usr/bin/env python3
"""Write a build-time pip.conf that names the package sources this machine's pip uses, and print
the read-only mounts a container build needs to reach them (`host_path:container_path`).

    pip-sources.py OUT_PIP_CONF > mounts

Only where packages come from is carried over (index URLs, find-links, trusted hosts, the CA
bundle, timeouts); constraints and caches stay on the host. deploy/build-images.sh mounts the
file at /etc/pip.conf for the RUN steps only, so none of it ends up in an image.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

CARRIED = {
    "index-url",
    "extra-index-url",
    "find-links",
    "trusted-host",
    "default-timeout",
    "timeout",
}
BUNDLE_IN_BUILD = "/etc/ssl/certs/ca-certificates.crt"
DEFAULT_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def configured() -> dict[str, str]:
    """pip's effective settings: its config files, then PIP_* variables (which win)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    settings: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        settings[name] = " ".join(shlex.split(value))
    for var, value in os.environ.items():
        if var.startswith("PIP_"):
            settings[var[4:].lower().replace("_", "-")] = value
    return settings


def local_dir(location: str) -> Path | None:
    """The directory to mount for a file:// index or a local find-links path, else None."""
    path = Path(location.removeprefix("file://")) if location.startswith(("file://", "/")) else None
    if path is None or not path.exists():
        return None
    # a PEP 503 tree: pages under simple/ link to files beside it (../../files/...)
    return path.parent if path.name == "simple" else path


def main(out: str) -> None:
    settings = configured()
    lines = ["[global]"]
    mounts: list[str] = []
    for name in sorted(CARRIED & settings.keys()):
        value = settings[name]
        lines.append(f"{name} = {value}")
        if name in {"index-url", "extra-index-url", "find-links"}:
            for location in value.split():
                directory = local_dir(location)
                if directory is not None and f"{directory}:{directory}" not in mounts:
                    mounts.append(f"{directory}:{directory}")
    bundle = Path(settings.get("cert", str(DEFAULT_BUNDLE)))
    if bundle.is_file():
        lines.append(f"cert = {BUNDLE_IN_BUILD}")
        mounts.append(f"{bundle.resolve()}:{BUNDLE_IN_BUILD}")
    Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(mounts))


if __name__ == "__main__":
    main(sys.argv[1])
