"""`azr demo` (= `make run` until the self-play loop exists): validate and verify a handful of
benign and hostile programs in the sandbox and print a table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from services.executor.engine import Engine

PROPOSALS = [
    ("sort", "def f(xs):\n    return sorted(xs)", ["[3, 1, 2]"]),
    (
        "helper named parse_input",
        "def parse_input(s):\n    return s.split(',')\ndef f(s):\n    return parse_input(s)",
        ["'a,b'"],
    ),
    ("returns NaN", "def f(x):\n    return float('nan')", ["1"]),
    ("set order (hash seed)", "def f(x):\n    return list({'a', 'b', 'c', 'd', 'e', 'f'})", ["1"]),
    ("imports os", "import os\ndef f(x):\n    return os.getcwd()", ["1"]),
]
HOSTILE = [
    ("read /etc/passwd", "def f():\n    return open('/etc/passwd').read()"),
    ("fork bomb", "import os\ndef f():\n    while True:\n        os.fork()"),
    ("memory bomb", "def f():\n    return [0] * 10**10"),
    ("infinite loop", "def f():\n    while True:\n        pass"),
]


def main() -> None:
    console = Console()
    engine = Engine()
    try:
        report = engine.start()
        layers = Table(title="isolation layers")
        layers.add_column("layer")
        layers.add_column("state")
        for name, layer in report["layers"].items():
            layers.add_row(
                name, ("active: " if layer["active"] else "UNAVAILABLE: ") + layer["detail"]
            )
        console.print(layers)
        table = Table(title="validation")
        for col in ("proposal", "valid", "status", "gold / reason"):
            table.add_column(col)
        items = [{"task_type": "deduction", "program": p, "inputs": i} for _, p, i in PROPOSALS]
        for (name, _, _), r in zip(PROPOSALS, engine.validate(items), strict=True):
            table.add_row(
                name, str(r["valid"]), r["status"], ", ".join(r["outputs"]) or r["reason"]
            )
        console.print(table)
        runs = engine.run([{"program": p, "input": "", "timeout_s": 2.0} for _, p in HOSTILE])
        table = Table(title="hostile programs (static checks bypassed)")
        for col in ("program", "status", "error"):
            table.add_column(col)
        for (name, _), r in zip(HOSTILE, runs, strict=True):
            table.add_row(name, r["status"], r["error"] or "")
        console.print(table)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
