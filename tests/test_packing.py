"""Packing: packed == unpacked loss on the tiny GPT-OSS (eager, CPU), wrong packings differ, the folder is reused."""

from __future__ import annotations

import pytest
import torch
from sft_fixtures import chat_conversation, mixed_texts, tool_conversation
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from pipeline_lib.pack_sft import (
    PackingError,
    check_packed_collation,
    enable_packed_attention,
    load_or_pack,
    pack_tokenized,
    packed_dataset_dir,
    verify_packed_attention,
)
from pipeline_lib.sft_data import tokenize_sft_dataset

PAD_ID = 199999


def tokenized(tokenizer, texts, max_seq_length=256):
    from datasets import Dataset

    ds, _ = tokenize_sft_dataset(Dataset.from_dict({"text": texts}), tokenizer, max_seq_length)
    return ds


def with_labels(row: dict) -> dict:
    """What SFTTrainer's dataset preparation does: labels = input_ids where assistant_masks == 1, else -100."""
    labels = [t if m else -100 for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True)]
    out = {"input_ids": row["input_ids"], "labels": labels}
    if "seq_lengths" in row:
        out["seq_lengths"] = row["seq_lengths"]
    return out


def load_tiny(path):
    from pipeline_lib.modeling import detect_precision, load_causal_lm

    model = load_causal_lm(path, detect_precision())
    assert model.config._attn_implementation == "eager"
    return model.eval()


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    """The tiny GPT-OSS with packed attention enabled, as the phase scripts use it."""
    model = load_tiny(tiny_model_dir)
    assert enable_packed_attention(model) == 1
    return model


def nll_sum_and_count(model, batch: dict) -> tuple[float, int]:
    """Token-summed NLL over labels != -100 (next-token, shifted) and how many tokens it covers."""
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch).logits[:, :-1].double()
    targets = labels[:, 1:]
    mask = targets != -100
    log_probs = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float(-(log_probs * mask).sum()), int(mask.sum())


@pytest.fixture(scope="module")
def docs(gpt_oss_tokenizer):
    texts = [tool_conversation(0), chat_conversation(1, 3), chat_conversation(2, 9), chat_conversation(3, 5)]
    return tokenized(gpt_oss_tokenizer, texts)


def unpacked_loss(model, docs) -> tuple[float, int]:
    collate = DataCollatorForLanguageModeling(pad_token_id=PAD_ID)
    total, count = 0.0, 0
    for row in docs:  # one conversation per forward: the reference
        s, n = nll_sum_and_count(model, collate([with_labels(row)]))
        total, count = total + s, count + n
    return total / count, count


def test_packed_equals_unpacked_loss(tiny_model, docs):
    packed = pack_tokenized(docs, 256)
    assert len(packed) < len(docs) and max(len(x) for x in packed["seq_lengths"]) >= 2  # really packed
    reference, n_ref = unpacked_loss(tiny_model, docs)
    collate = DataCollatorForLanguageModeling(pad_token_id=PAD_ID, padding_free=True)  # what SFTTrainer uses
    batch = collate([with_labels(row) for row in packed])
    assert "attention_mask" not in batch
    s, n = nll_sum_and_count(tiny_model, batch)
    assert n == n_ref  # the same trained tokens
    assert s / n == pytest.approx(reference, abs=1e-5)


def test_wrong_packing_differs(tiny_model, tiny_model_dir, docs):
    """Negative controls: positions that run on across conversations, attention across them (explicit all-ones
    mask), and the stock GptOssModel without our hook (transformers 5.17 ignores position_ids for its masks)."""
    packed = pack_tokenized(docs, 256)
    reference, _ = unpacked_loss(tiny_model, docs)
    collate = DataCollatorForLanguageModeling(pad_token_id=PAD_ID, padding_free=True)
    good = collate([with_labels(row) for row in packed])

    stock = load_tiny(tiny_model_dir)
    s, n = nll_sum_and_count(stock, {k: v.clone() for k, v in good.items()})
    assert abs(s / n - reference) > 1e-4

    no_reset = {**good, "position_ids": torch.arange(good["input_ids"].shape[1]).unsqueeze(0)}
    s, n = nll_sum_and_count(tiny_model, {k: v.clone() for k, v in no_reset.items()})
    assert abs(s / n - reference) > 1e-3

    cross_attention = {**good, "attention_mask": torch.ones_like(good["input_ids"])}  # positions reset, mask not
    s, n = nll_sum_and_count(tiny_model, {k: v.clone() for k, v in cross_attention.items()})
    assert abs(s / n - reference) > 1e-3


def test_pack_keeps_every_conversation_and_its_mask(gpt_oss_tokenizer):
    docs = tokenized(gpt_oss_tokenizer, mixed_texts(9), max_seq_length=128)
    packed = pack_tokenized(docs, 128)
    assert all(len(ids) <= 128 for ids in packed["input_ids"])
    pieces = []
    for row in packed:
        assert sum(row["seq_lengths"]) == len(row["input_ids"]) == len(row["assistant_masks"])
        start = 0
        for n in row["seq_lengths"]:
            pieces.append((tuple(row["input_ids"][start:start + n]), tuple(row["assistant_masks"][start:start + n])))
            start += n
    originals = [(tuple(r["input_ids"]), tuple(r["assistant_masks"])) for r in docs]
    assert sorted(pieces) == sorted(originals)
    with pytest.raises(PackingError, match="longer than max_seq_length"):
        pack_tokenized(docs, 64)


def test_load_or_pack_saves_and_reuses_folder(gpt_oss_tokenizer, tmp_path):
    docs = tokenized(gpt_oss_tokenizer, mixed_texts(6))
    folder = packed_dataset_dir(tmp_path / "agent_traj" / "train", 256)
    assert folder == tmp_path / "agent_traj" / "train_packed_256"
    calls = []

    def tokenize():
        calls.append(1)
        return docs, {"rows_kept": len(docs)}

    first, info = load_or_pack(tokenize, folder, 256, key="k1")
    assert info["source"] == "packed now" and (folder / "pack_info.json").is_file() and calls == [1]
    again, info = load_or_pack(tokenize, folder, 256, key="k1")
    assert info["source"] == "pre-packed" and calls == [1] and again["input_ids"] == first["input_ids"]
    _, info = load_or_pack(tokenize, folder, 256, key="k2")  # other data: packed again
    assert info["source"] == "packed now" and calls == [1, 1]


def test_collation_check_catches_unpacked_batches(gpt_oss_tokenizer):
    packed = pack_tokenized(tokenized(gpt_oss_tokenizer, mixed_texts(6)), 256)
    rows = packed.map(with_labels, remove_columns=["assistant_masks"])
    report = check_packed_collation(DataCollatorForLanguageModeling(pad_token_id=PAD_ID, padding_free=True), rows)
    assert report["passed"] and report["conversations_checked"] > report["rows_checked"]
    with pytest.raises(PackingError, match="attention_mask"):  # a backend that pads instead of packing
        check_packed_collation(DataCollatorForLanguageModeling(pad_token_id=PAD_ID), rows)


def test_verify_packed_attention(tiny_model, tiny_model_dir, docs):
    first, second = docs[0]["input_ids"], docs[1]["input_ids"]
    report = verify_packed_attention(tiny_model, first, second)
    assert report["passed"] and report["max_rel_logit_diff"] < 1e-4
    with pytest.raises(PackingError, match="attend to each other"):
        verify_packed_attention(load_tiny(tiny_model_dir), first, second)


def test_packing_is_turned_off_on_unsloth_and_kept_on_hf():
    from pipeline_lib.sft import effective_packing

    assert effective_packing(True, "hf") == (True, None)
    packed, note = effective_packing(True, "unsloth")
    assert packed is False and "position_ids" in note
    assert effective_packing(False, "unsloth") == (False, None)


def test_the_reason_rows_are_not_packed_lands_in_the_data_stats(gpt_oss_tokenizer, tmp_path):
    """Phases 1 and 2 pass effective_packing's note to prepare_sft_data; it is kept in the stats that
    phase_metrics.json records (control: no note, no key)."""
    from sft_fixtures import chat_conversation, write_text_dataset

    from pipeline_lib.sft import effective_packing, prepare_sft_data

    path = write_text_dataset(tmp_path / "train", [chat_conversation(i) for i in range(4)])
    packed, note = effective_packing(True, "unsloth")
    kwargs = {"max_seq_length": 256, "packing": packed, "eval_strategy": "no", "eval_split_size": 0.0, "seed": 0}
    data = prepare_sft_data(str(path), gpt_oss_tokenizer, packing_note=note, **kwargs)
    assert data.stats["packing"] == {"packed": False, "note": note} and "position_ids" in note
    assert prepare_sft_data(str(path), gpt_oss_tokenizer, **kwargs).stats["packing"] == {"packed": False}
