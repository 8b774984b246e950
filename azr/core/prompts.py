"""Prompt text for the three proposer roles and the three solver roles.

`propose_prompt` and `solve_prompt` return the *task text* (what the "User" says); `wrap_r1` puts
it into the R1-style envelope that ends with a pre-opened ``<think>``. The envelope is plain text:
like the reference, we do not route it through a chat template (the engines receive the final
string; an engine that wants ChatML for an instruct model may wrap it, but the default is plain
concatenation so the pre-opened ``<think>`` really is the last thing the model sees).

For a tiny model the answer structure can be pre-opened further with `answer_prefill`: pass the
prefill to `wrap_r1(..., prefill=...)` and parse ``prefill + generation``.
"""

from __future__ import annotations

from collections.abc import Sequence

from azr.core.tasks import Role, Task, TaskType

R1_INSTRUCTION = (
    "A conversation between User and Assistant. The User gives a task and the Assistant "
    "completes it. The Assistant first reasons about the task privately and then gives the "
    "final answer. The reasoning goes inside <think> </think> tags and the final answer inside "
    "<answer> </answer> tags, like this: <think> reasoning here </think> <answer> answer here "
    "</answer>."
)


def wrap_r1(task_text: str, *, prefill: str = "") -> str:
    """The R1 envelope: instruction, ``User: {task}``, then ``Assistant: <think>`` (+ prefill)."""
    return f"{R1_INSTRUCTION}\nUser: {task_text}\nAssistant: <think>{prefill}"


def answer_prefill(task_type: TaskType, role: Role) -> str:
    """A continuation of the pre-opened ``<think>`` that opens the answer block for the model.

    Closes the think section with one short sentence and opens ``<answer>`` plus the fenced block
    the role must write first. Meant for cold-start models that never find the format alone.
    """
    task_type, role = TaskType(task_type), Role(role)
    if role is Role.PROPOSE:
        if task_type is TaskType.INDUCTION:
            plan, block = "I will write varied inputs and a helpful message.", "```input\n"
        else:
            plan, block = "I will write a new function f and one input for it.", "```python\ndef f("
    elif task_type is TaskType.DEDUCTION:
        plan, block = "I will trace the program on the input.", "```output\n"
    elif task_type is TaskType.ABDUCTION:
        plan, block = "I will search for an input that gives the output.", "```input\n"
    else:
        plan, block = "I will find the rule behind the examples.", "```python\ndef f("
    return f" {plan} </think>\n<answer>\n{block}"


# ---------------------------------------------------------------- proposer prompts

_CODE_REQUIREMENTS = """\
- The entry point is a function named `f`. Helper functions may be nested inside `f`; classes are
  allowed but must be defined at the top of the program.
- `f` takes at least one parameter and returns a value.
- The program is deterministic: the same input always gives the same output. Do not use
  randomness, the date or time, files, the network, printing, logging or any outside state.
- It must finish within 10 seconds on an ordinary CPU.
- Put any imports and class definitions at the very top and end the program with the definition
  of `f`: no test calls or prints after it."""

_PROPOSER_EXTRA = """\
- Good programs need several steps of careful state tracking to follow."""

_INPUT_REQUIREMENTS = """\
- Give exactly one input: the arguments of a single call to `f`, written as Python literals.
- Separate several arguments with commas and quote strings, e.g. `'abc', [1, 2], 3`."""

_EXAMPLE_PROGRAM = """\
def f(name: str, info: dict):
    flags = sorted(key for key, value in info.items() if value)
    return name + ':' + ','.join(flags)"""

_EXAMPLE_INPUT = "'Ada', {'admin': True, 'guest': False, 'staff': 1}"

# What the test subject must do, and why that is hard, per task type. The official prompts have
# the two difficulty bullets swapped (azr-reference §2.3/§10.20); here each matches its framing.
_FRAMING = {
    TaskType.DEDUCTION: (
        "The test subject will see your program and your input and must work out, without "
        "running anything, the exact value the program returns.",
        "Difficulty: predicting the output should demand real reasoning — loops with changing "
        "state, recursion, string or list manipulation, sorting, dynamic programming, graphs.",
    ),
    TaskType.ABDUCTION: (
        "The test subject will see your program and the output it returns for your input, and "
        "must find an input (any input) that makes the program return exactly that output.",
        "Difficulty: recovering an input from the output should demand real reasoning — the "
        "program should not be trivially invertible, yet an input must be findable by working "
        "backwards through its logic.",
    ),
}


def _fence(label: str, body: str) -> str:
    return f"```{label}\n{body}\n```"


def _render_reference(index: int, task: Task) -> str:
    parts = [_fence("python", task.source), _fence("input", task.input)]
    if task.outputs:
        parts.append(_fence("output", task.output))
    body = "\n".join(parts)
    return f"<snippet_{index}>\n{body}\n</snippet_{index}>"


def propose_prompt(
    task_type: TaskType,
    references: Sequence[Task],
    banned: Sequence[str],
    *,
    n_inputs: int = 10,
) -> str:
    """The proposer's task text. Deduction/abduction show every reference as a numbered
    ``<snippet_i>``; induction shows only ``references[0]`` and asks for ``n_inputs`` inputs and a
    message."""
    task_type = TaskType(task_type)
    if task_type is TaskType.INDUCTION:
        if not references:
            raise ValueError("an induction proposal needs one reference program")
        return _induction_propose_prompt(references[0], n_inputs)
    situation, difficulty = _FRAMING[task_type]
    banned_text = ", ".join(banned) if banned else "(none)"
    snippets = "\n".join(_render_reference(i + 1, ref) for i, ref in enumerate(references))
    return f"""\
## Task: invent one new question for a Python reasoning test

Write a new Python program and one input for it. {situation} Make it hard but
solvable.

### Program requirements
{_CODE_REQUIREMENTS}
{_PROPOSER_EXTRA}

### Input requirements
{_INPUT_REQUIREMENTS}

### Answer format
Inside <answer> </answer>, put the program in a ```python block and the input in an ```input
block. Any output you write is ignored: the program is run to compute it.

### Example answer
<answer>
{_fence("python", _EXAMPLE_PROGRAM)}
{_fence("input", _EXAMPLE_INPUT)}
</answer>

### How the question is judged
- Executable: the program runs on the input without errors.
- {difficulty}
- Creativity: the program is clearly different from every reference below.
- Forbidden words: do not use any of these anywhere, comments included: {banned_text}

### Reference questions
{snippets if snippets else "(none yet)"}

First plan your program inside <think> </think>, then give the answer."""


def _induction_propose_prompt(reference: Task, n_inputs: int) -> str:
    example_inputs = "\n".join(_fence("input", text) for text in ("'racecar'", "'Level'", "''"))
    return f"""\
## Task: choose test inputs and write a hint for a program-discovery test

Below is a Python program. A test subject will be shown some of your inputs together with the
outputs this program returns for them, plus your message, and must then write the program
themselves. The remaining inputs are used to check their program.

### The program
{_fence("python", reference.source)}

It is called like this:
{_fence("python", "f(<your input will be plugged here>)")}

### What to write
- Exactly {n_inputs} inputs, each in its own ```input block: the arguments of one call to `f`
  as Python literals, several arguments separated by commas, strings quoted.
- One message in a ```message block that helps the test subject find the rule: a description, a
  puzzle statement or a coding question. The message must not contain any code.

### How the inputs are judged
- Executable: the program runs on every input without errors.
- Coverage: together the inputs exercise every branch and behaviour of the program.
- Variety: the inputs differ clearly from each other.
- Difficulty: recovering the program should be challenging but possible.

### Example answer (for a different program, with fewer inputs than you must give)
<answer>
{example_inputs}
{_fence("message", "Decide whether a word reads the same backwards, ignoring case.")}
</answer>

First plan your inputs inside <think> </think>, then give the answer."""


# ---------------------------------------------------------------- solver prompts


def solve_prompt(task: Task) -> str:
    """The solver's task text. Deduction: program + input -> output. Abduction: program + output
    -> input. Induction: the visible input/output pairs and the message (never the program) ->
    a program."""
    if task.task_type is TaskType.DEDUCTION:
        return f"""\
## Task: predict the output of a Python program

Work out, step by step, what the program returns for the given input.

{_fence("python", task.source)}

{_fence("input", task.input)}

Give the returned value as a Python literal in an ```output block inside <answer> </answer>:
quote strings and write several returned values as a tuple. For example:
<answer>
{_fence("output", "('abc', 3)")}
</answer>"""
    if task.task_type is TaskType.ABDUCTION:
        return f"""\
## Task: find an input for a Python program

Find any input for which the program returns exactly the output shown.

{_fence("python", task.source)}

{_fence("output", task.output)}

Give the input in an ```input block inside <answer> </answer>: the arguments of one call to `f`
as Python literals, separated by commas, strings quoted. For example:
<answer>
{_fence("input", "'abc', [1, 2]")}
</answer>"""
    pairs = "\n".join(
        f"{_fence(f'input_{i}', given)}\n{_fence(f'output_{i}', produced)}"
        for i, (given, produced) in enumerate(task.visible_pairs(), start=1)
    )
    return f"""\
## Task: recover a Python program from examples

Here are inputs passed to a hidden function `f` and the values it returned.

{pairs}

A hint from the person who chose the examples:
{_fence("message", task.message)}

Write the function. It must return the right value on these inputs and on further hidden inputs
of the same kind.
{_CODE_REQUIREMENTS}

Give the program in a ```python block inside <answer> </answer>. For example:
<answer>
{_fence("python", "def f(text):" + chr(10) + "    return text[::-1]")}
</answer>"""
