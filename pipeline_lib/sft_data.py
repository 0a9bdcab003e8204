"""Harmony SFT data: load a ``text`` dataset, assistant-only loss masks, tokenize + truncate (both SFT phases,
data prep's checks and pack_sft's pre-packing read it).

Loss mask (the one rule, from token ids): for every ``<|start|>`` (200006) followed by the role token ``assistant``
(173781) and then a header boundary (``<|channel|>``, ``<|message|>`` or a whitespace-led token such as
`` to=functions.x``), the trained span is every token after the role up to and including that message's end token
(``<|end|>`` 200007, ``<|call|>`` 200012 or ``<|return|>`` 200002) — exactly what the model generates after
``<|start|>assistant``: analysis, tool calls and final answers. System, developer, user and tool-result tokens
(``<|start|>functions.x to=assistant...``) are never trained. A span also stops before a ``<|start|>`` (a missing end
token never leaks training into the next message) or at the end of a truncated sequence.

The masks reach TRL 1.15 as the ``assistant_masks`` column of a pre-tokenized dataset: SFTTrainer's
``_prepare_dataset`` turns it into ``labels`` (-100 where the mask is 0) and DataCollatorForLanguageModeling pads
labels with -100. We tokenize ourselves rather than use ``assistant_only_loss=True`` because that needs a chat
template with ``{% generation %}`` markers and our data is already-rendered Harmony text, not messages.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_lib.tokenizer import CALL_ID, END_ID, RETURN_ID

START_ID = 200006
CHANNEL_ID = 200005
MESSAGE_ID = 200008
MESSAGE_END_IDS = frozenset({END_ID, CALL_ID, RETURN_ID})
FIRST_SPECIAL_ID = 199998  # ids >= this are Harmony control tokens

class HarmonyMasker:
    """Assistant-only loss masks over token ids (see the module docstring for the rule)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.role_ids = tokenizer("assistant", add_special_tokens=False)["input_ids"]
        if not self.role_ids:
            raise ValueError("tokenizer encodes 'assistant' to nothing")

    def _is_header_boundary(self, token_id: int) -> bool:
        if token_id >= FIRST_SPECIAL_ID:
            return True
        text = self.tokenizer.decode([token_id])
        return bool(text) and text[0].isspace()

    def mask(self, input_ids: Sequence[int]) -> list[int]:
        ids = list(input_ids)
        n, k = len(ids), len(self.role_ids)
        mask = [0] * n
        i = 0
        while i < n:
            role_end = i + 1 + k
            if (ids[i] == START_ID and ids[i + 1:role_end] == self.role_ids
                    and (role_end >= n or self._is_header_boundary(ids[role_end]))):
                j = role_end
                while j < n and ids[j] != START_ID:
                    mask[j] = 1
                    if ids[j] in MESSAGE_END_IDS:
                        j += 1
                        break
                    j += 1
                i = j
            else:
                i += 1
        return mask


@dataclass
class TokenizeStats:
    rows_in: int
    rows_kept: int
    dropped_no_trained_tokens: int
    truncated: int
    tokens: int
    trained_tokens: int
    max_seq_length: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def tokenize_sft_dataset(dataset: Any, tokenizer: Any, max_seq_length: int, text_field: str = "text",
                         num_proc: int | None = None) -> tuple[Any, dict[str, int]]:
    """Harmony text -> ``input_ids`` + ``assistant_masks``, truncated (keep start) to max_seq_length.

    Rows left with no trained token (all-prompt, or truncated before the first assistant token) are dropped and
    counted: they would add nothing but padding to a batch.
    """
    masker = HarmonyMasker(tokenizer)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"input_ids": [], "assistant_masks": [], "n_trained": [], "truncated": []}
        for ids in tokenizer(batch[text_field], add_special_tokens=False)["input_ids"]:
            mask = masker.mask(ids)
            out["truncated"].append(len(ids) > max_seq_length)
            ids, mask = ids[:max_seq_length], mask[:max_seq_length]
            out["input_ids"].append(ids)
            out["assistant_masks"].append(mask)
            out["n_trained"].append(sum(mask))
        return out

    rows_in = len(dataset)
    encoded = dataset.map(encode, batched=True, remove_columns=dataset.column_names, num_proc=num_proc,
                          desc="Tokenizing + assistant masks")
    n_trained = encoded["n_trained"]
    lengths = [len(x) for x in encoded["input_ids"]]
    truncated = encoded["truncated"]
    keep = [i for i, n in enumerate(n_trained) if n > 0]
    kept = encoded.select(keep).remove_columns(["n_trained", "truncated"])
    stats = TokenizeStats(rows_in=rows_in, rows_kept=len(keep), dropped_no_trained_tokens=rows_in - len(keep),
                          truncated=int(sum(truncated)), tokens=int(sum(lengths[i] for i in keep)),
                          trained_tokens=int(sum(n_trained[i] for i in keep)), max_seq_length=max_seq_length)
    if not len(kept):
        raise ValueError(f"no row has an assistant token within max_seq_length={max_seq_length} "
                         f"({rows_in} rows in): check the data is Harmony text with assistant messages")
    return kept, stats.as_dict()


def render_mask(input_ids: Sequence[int], mask: Sequence[int], tokenizer: Any) -> Any:
    """rich Text of a sample: trained tokens bold green on black, untrained dim; control tokens in cyan/blue."""
    from rich.text import Text

    text = Text()
    for token_id, m in zip(input_ids, mask, strict=True):
        piece = tokenizer.decode([token_id])
        special = token_id >= FIRST_SPECIAL_ID
        if m:
            text.append(piece, style="bold bright_cyan on grey15" if special else "bold green on grey15")
        else:
            text.append(piece, style="blue" if special else "dim")
    return text


def print_mask_example(dataset: Any, tokenizer: Any, index: int = 0, console: Any = None) -> None:
    """Print one tokenized sample with its loss mask (``--print_mask_example``)."""
    from rich.console import Console
    from rich.panel import Panel

    console = console or Console(stderr=True)
    row = dataset[index]
    mask = row["assistant_masks"]
    if "seq_lengths" in row:  # a packed row: show its first conversation
        mask = mask[:row["seq_lengths"][0]]
    ids = row["input_ids"][:len(mask)]
    title = f"sample {index}: {sum(mask)}/{len(ids)} tokens trained (green = loss, dim = context)"
    console.print(Panel(render_mask(ids, mask, tokenizer), title=title))


def load_text_dataset(path: str | os.PathLike, text_field: str = "text") -> Any:
    """load_from_disk with early, specific errors (missing folder, missing column, empty, non-Harmony text)."""
    from datasets import Dataset, DatasetDict, load_from_disk

    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"--train_data_path {folder}: no such folder (run data prep first: "
                                "scripts/tui_data_prep.py)")
    dataset = load_from_disk(str(folder))
    if isinstance(dataset, DatasetDict):
        if "train" not in dataset:
            raise ValueError(f"--train_data_path {folder}: DatasetDict without a 'train' split ({list(dataset)})")
        dataset = dataset["train"]
    if not isinstance(dataset, Dataset):
        raise ValueError(f"--train_data_path {folder}: expected a datasets.Dataset, got {type(dataset).__name__}")
    if text_field not in dataset.column_names:
        raise ValueError(f"--train_data_path {folder}: no '{text_field}' column (has {dataset.column_names})")
    if len(dataset) == 0:
        raise ValueError(f"--train_data_path {folder}: the dataset is empty")
    first = dataset[0][text_field]
    if not isinstance(first, str) or "<|start|>" not in first:
        raise ValueError(f"--train_data_path {folder}: row 0 '{text_field}' is not Harmony text "
                         f"(no <|start|>): {str(first)[:80]!r}")
    return dataset
