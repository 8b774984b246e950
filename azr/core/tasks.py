"""Task records shared by every service.

Naming follows the paper, not the official code: deduction = predict the output (`code_o`),
abduction = predict the input (`code_i`), induction = predict the program (`code_f`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class TaskType(StrEnum):
    DEDUCTION = "deduction"
    ABDUCTION = "abduction"
    INDUCTION = "induction"


class Role(StrEnum):
    PROPOSE = "propose"
    SOLVE = "solve"


# The six task x role groups; TRR++ keeps one baseline for each.
GROUPS: tuple[tuple[TaskType, Role], ...] = tuple((t, r) for t in TaskType for r in Role)


def group_key(task_type: TaskType | str, role: Role | str) -> str:
    """Stable text key of a group, e.g. ``deduction/propose``."""
    return f"{TaskType(task_type).value}/{Role(role).value}"


@dataclass(frozen=True)
class Task:
    """A validated task: a program with inputs and the gold outputs the executor computed.

    `inputs` and `outputs` are Python source text as AZR writes them: an input is the argument
    list of a call (``'abc', 3``), an output is ``repr(f(*args))``. Deduction and abduction tasks
    carry one pair; induction tasks carry N pairs and the proposer's message.
    """

    task_type: TaskType
    program: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    message: str = ""
    imports: tuple[str, ...] = ()

    @property
    def input(self) -> str:
        return self.inputs[0]

    @property
    def output(self) -> str:
        return self.outputs[0]

    @property
    def source(self) -> str:
        """The program with its import lines, as executed and as shown to solvers."""
        head = "\n".join(self.imports)
        return f"{head}\n{self.program}" if head else self.program

    def visible_pairs(self) -> list[tuple[str, str]]:
        """Induction: the first floor(n/2) pairs are shown to the solver."""
        half = len(self.inputs) // 2
        return list(zip(self.inputs[:half], self.outputs[:half], strict=True))

    def hidden_pairs(self) -> list[tuple[str, str]]:
        """Induction: the remaining ceil(n/2) pairs grade the solver's program."""
        half = len(self.inputs) // 2
        return list(zip(self.inputs[half:], self.outputs[half:], strict=True))


@dataclass
class Proposal:
    """What the proposer wrote, as parsed by the core (before the executor has seen it).

    For deduction/abduction `program` and one entry of `inputs` are set; for induction the
    program comes from the reference and the proposer supplies `inputs` and `message`.
    `format_ok` is the think/answer format check; `error` says why parsing failed, if it did.
    """

    task_type: TaskType
    program: str | None = None
    inputs: list[str] = field(default_factory=list)
    message: str | None = None
    imports: list[str] = field(default_factory=list)
    format_ok: bool = False
    error: str | None = None

    @property
    def parsed(self) -> bool:
        return self.error is None and self.program is not None and bool(self.inputs)


@dataclass
class Answer:
    """A solver's parsed answer: an output literal, an input literal, or a program."""

    task_type: TaskType
    value: str
    format_ok: bool
    error: str | None = None


IDENTITY_PROGRAM = "def f(a):\n    return a"

# The single zero triplet every run starts from (the paper's seed: identity on "Hello world").
IDENTITY_SEED = Task(
    task_type=TaskType.DEDUCTION,
    program=IDENTITY_PROGRAM,
    inputs=('"Hello world"',),
    outputs=("'Hello world'",),
)

# The induction seed: the same identity program on six varied inputs.
IDENTITY_INDUCTION_SEED = Task(
    task_type=TaskType.INDUCTION,
    program=IDENTITY_PROGRAM,
    inputs=(
        '"Hello world"',
        "1",
        "dict(a=1, b=2)",
        "(1.1, 1.2, 1.3)",
        '"[[1, 0, 0], [0, 0, 0], [0, 0, 0]]"',
        "1001101100010001",
    ),
    outputs=(
        "'Hello world'",
        "1",
        "{'a': 1, 'b': 2}",
        "(1.1, 1.2, 1.3)",
        "'[[1, 0, 0], [0, 0, 0], [0, 0, 0]]'",
        "1001101100010001",
    ),
    message="Write a function that returns whatever you give it.",
)
