"""Samples that share a prompt train as one row: the prompt once, then every completion after it.

The solver answers each task several times (8 answers per task in the learning runs) and its
prompts are ~200 tokens against answers of ~5, so an unpacked batch spends nearly all of its
forward and backward pass on copies of one prompt. A packed row holds the prompt once and the
completions one after another. The attention mask lets a completion see the prompt and its own
earlier tokens only, and its position ids continue from the prompt's end, so each completion
token gets the log-prob it has in a row of its own (to float rounding,
tests/trainer/test_packing.py). The prompt's activations receive the gradients of all its
completions, as they would summed over the separate rows.

A completion token at offset t is predicted by the hidden state before it: the prompt's last
token for t = 0 (shared by every completion of the row), the completion's own token t - 1 after.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

PROMPT = -1  # segment id of prompt tokens
PADDING = -2  # segment id of padding

# Attention kernels that honour an arbitrary [B, 1, L, L] mask; flash attention does not.
PACKABLE_ATTENTION = frozenset({"sdpa", "eager"})


@dataclass(frozen=True)
class Row:
    """One row of a micro-batch: a prompt and the completions of `samples` (batch indices)."""

    prompt: list[int]
    completions: list[list[int]]
    samples: list[int]

    def __len__(self) -> int:
        return len(self.prompt) + sum(len(c) for c in self.completions)


def pack_rows(
    prompts: list[list[int]], completions: list[list[int]], budget: int, share: bool = True
) -> list[Row]:
    """Rows for a batch: with `share`, one per distinct prompt holding the completions of every
    sample with that prompt, split where a row would pass `budget` tokens (each row keeps at
    least one completion); without, one row per sample (the unpacked layout). Samples without
    completion tokens have nothing to train and are left out. Rows follow the batch's order."""
    rows: list[Row] = []
    open_row: dict[tuple[int, ...], Row] = {}
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        if not completion:
            continue
        key = tuple(prompt)
        row = open_row.get(key) if share else None
        if row is not None and len(row) + len(completion) <= budget:
            row.completions.append(completion)
            row.samples.append(i)
            continue
        row = Row(list(prompt), [completion], [i])
        rows.append(row)
        open_row[key] = row
    return rows


@dataclass
class MicroBatch:
    """Model inputs for some rows and where their completion tokens are.

    `attention_mask` is the [B, L] padding mask when every row holds one completion (the
    kernels' plain causal path) and a [B, 1, L, L] mask otherwise, with `position_ids`. Per
    trained token, in the order of `samples` and within a sample in token order: the (row,
    column) of the hidden state that predicts it and its id."""

    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor | None
    predict_rows: Tensor
    predict_cols: Tensor
    targets: Tensor
    samples: list[int]

    def to(self, device: torch.device) -> MicroBatch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return MicroBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            move(self.position_ids),
            self.predict_rows.to(device),
            self.predict_cols.to(device),
            self.targets.to(device),
            self.samples,
        )


def micro_batch(
    rows: list[Row], pad_id: int, attention: str = "sdpa", dtype: torch.dtype = torch.float32
) -> MicroBatch:
    """Right-padded inputs for `rows`. `attention` is the model's attention implementation: sdpa
    takes a boolean mask, eager adds the mask to its scores, so it gets 0 / the dtype's min."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    segment = torch.full((len(rows), width), PADDING, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    pred_rows: list[int] = []
    pred_cols: list[int] = []
    targets: list[int] = []
    samples: list[int] = []
    for b, row in enumerate(rows):
        n_p = len(row.prompt)
        ids[b, :n_p] = torch.tensor(row.prompt)
        segment[b, :n_p] = PROMPT
        positions[b, :n_p] = torch.arange(n_p)
        start = n_p
        for k, (completion, sample) in enumerate(zip(row.completions, row.samples, strict=True)):
            n_c = len(completion)
            ids[b, start : start + n_c] = torch.tensor(completion)
            segment[b, start : start + n_c] = k
            positions[b, start : start + n_c] = torch.arange(n_p, n_p + n_c)
            pred_rows += [b] * n_c
            pred_cols += [n_p - 1, *range(start, start + n_c - 1)]
            targets += completion
            samples.append(sample)
            start += n_c
    if all(len(r.completions) == 1 for r in rows):
        mask: Tensor = (segment != PADDING).long()
        position_ids = None
    else:
        mask = _packed_mask(segment)
        if attention == "eager":
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
        position_ids = positions
    return MicroBatch(
        ids,
        mask,
        position_ids,
        torch.tensor(pred_rows, dtype=torch.long),
        torch.tensor(pred_cols, dtype=torch.long),
        torch.tensor(targets, dtype=torch.long),
        samples,
    )


def _packed_mask(segment: Tensor) -> Tensor:
    """[B, 1, L, L], True where query q may attend key k: causally, to prompt tokens and to
    tokens of its own completion (padding to earlier padding, so no row is empty)."""
    idx = torch.arange(segment.shape[1])
    causal = idx[None, :] <= idx[:, None]
    q, k = segment[:, :, None], segment[:, None, :]
    return (causal & (((k == PROMPT) & (q != PADDING)) | (k == q))).unsqueeze(1)
