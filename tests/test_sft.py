"""Assistant-only loss masks (exact, token for token), tokenization/truncation, configs, and the phase scripts."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from sft_fixtures import SYSTEM, TOOLS, chat_conversation, mixed_texts, tool_conversation, write_text_dataset

from pipeline_lib.checkpoints import resolve_resume_checkpoint
from pipeline_lib.modeling import detect_precision
from pipeline_lib.sft_config import (
    AgentScriptArguments,
    AgentSFTConfig,
    ToolCallingScriptArguments,
    ToolCallingSFTConfig,
    parse_phase_args,
)
from pipeline_lib.sft_data import HarmonyMasker, render_mask, tokenize_sft_dataset

REPO = Path(__file__).resolve().parents[1]
HUB_TOKEN_CANARY = "hf_canaryHUBtoken0123456789"


def test_mask_exact_simple_exchange(gpt_oss_tokenizer):
    text = "<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>Hello<|return|>"
    ids = gpt_oss_tokenizer(text, add_special_tokens=False)["input_ids"]
    # <|start|> user <|message|> Hi <|end|> <|start|> assistant <|channel|> final <|message|> Hello <|return|>
    assert ids == [200006, 1428, 200008, 12194, 200007, 200006, 173781, 200005, 17196, 200008, 13225, 200002]
    assert HarmonyMasker(gpt_oss_tokenizer).mask(ids) == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]


def test_mask_exact_tool_call_and_tool_result(gpt_oss_tokenizer):
    text = ("<|start|>user<|message|>ls<|end|>"
            "<|start|>assistant to=functions.run<|channel|>commentary <|constrain|>json<|message|>{}<|call|>"
            "<|start|>functions.run to=assistant<|channel|>commentary<|message|>ok<|end|>"
            "<|start|>assistant<|channel|>final<|message|>Done<|return|>")
    ids = gpt_oss_tokenizer(text, add_special_tokens=False)["input_ids"]
    expected = [  # (token id, trained), written out by hand
        (200006, 0), (1428, 0), (200008, 0), (3973, 0), (200007, 0),           # user: ls
        (200006, 0), (173781, 0),                                               # <|start|>assistant
        (316, 1), (28, 1), (44580, 1), (14795, 1),                              # to=functions.run
        (200005, 1), (12606, 1), (815, 1), (220, 1),                            # <|channel|>commentary
        (200003, 1), (4108, 1), (200008, 1), (12083, 1), (200012, 1),           # <|constrain|>json..{}<|call|>
        (200006, 0), (44580, 0), (14795, 0), (316, 0), (28, 0), (173781, 0),    # tool result ...to=assistant
        (200005, 0), (12606, 0), (815, 0), (200008, 0), (525, 0), (200007, 0),  # <|channel|>commentary..ok<|end|>
        (200006, 0), (173781, 0),                                               # <|start|>assistant
        (200005, 1), (17196, 1), (200008, 1), (24537, 1), (200002, 1),          # <|channel|>final..Done<|return|>
    ]
    assert ids == [t for t, _ in expected]
    assert HarmonyMasker(gpt_oss_tokenizer).mask(ids) == [m for _, m in expected]


def _segments_mask(tokenizer, segments: list[tuple[str, int]]) -> tuple[list[int], list[int]]:
    ids, mask = [], []
    for text, trained in segments:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        mask += [trained] * len(piece)
    return ids, mask


def test_mask_full_conversation_by_segments(gpt_oss_tokenizer):
    """System, developer (tools), user, analysis, call, tool result, final: only the assistant parts are trained."""
    segments = [
        (SYSTEM + TOOLS + "<|start|>user<|message|>Run test number 3 and tell me if it passes.<|end|>", 0),
        ("<|start|>assistant", 0), ("<|channel|>analysis<|message|>I should run test 3 with cargo.<|end|>", 1),
        ("<|start|>assistant", 0),
        (' to=functions.run<|channel|>commentary <|constrain|>json<|message|>{"cmd": "cargo test t3"}<|call|>', 1),
        ("<|start|>functions.run to=assistant<|channel|>commentary<|message|>test t3 ... ok<|end|>", 0),
        ("<|start|>assistant", 0), ("<|channel|>final<|message|>Test 3 passes.<|return|>", 1),
    ]
    ids, expected = _segments_mask(gpt_oss_tokenizer, segments)
    assert ids == gpt_oss_tokenizer(tool_conversation(3), add_special_tokens=False)["input_ids"]
    assert HarmonyMasker(gpt_oss_tokenizer).mask(ids) == expected


def test_mask_negative_controls(gpt_oss_tokenizer):
    """A tool result addressed to=assistant, a user saying 'assistant', and a missing end token are not trained on."""
    masker = HarmonyMasker(gpt_oss_tokenizer)
    tok = gpt_oss_tokenizer
    tool_result = tok("<|start|>functions.run to=assistant<|channel|>commentary<|message|>ok<|end|>",
                      add_special_tokens=False)["input_ids"]
    assert sum(masker.mask(tool_result)) == 0
    user = tok("<|start|>user<|message|>assistant, help<|end|>", add_special_tokens=False)["input_ids"]
    assert sum(masker.mask(user)) == 0
    # An assistant message without its end token stops before the next <|start|>: the user turn stays untrained.
    ids, expected = _segments_mask(tok, [("<|start|>assistant", 0), ("<|channel|>final<|message|>Hi", 1),
                                         ("<|start|>user<|message|>more<|end|>", 0)])
    assert masker.mask(ids) == expected


def test_tokenize_truncates_and_drops_rows_without_trained_tokens(gpt_oss_tokenizer):
    from datasets import Dataset

    prompt_only = SYSTEM + "<|start|>user<|message|>hello<|end|>"
    long_prompt = SYSTEM + "<|start|>user<|message|>" + "word " * 200 + "<|end|>" + "<|start|>assistant<|channel|>" \
        "final<|message|>ok<|return|>"
    texts = [chat_conversation(0), prompt_only, long_prompt, tool_conversation(1)]
    ds = Dataset.from_dict({"text": texts})
    tokenized, stats = tokenize_sft_dataset(ds, gpt_oss_tokenizer, max_seq_length=128)
    assert stats["rows_in"] == 4 and stats["rows_kept"] == 2 and stats["dropped_no_trained_tokens"] == 2
    assert stats["truncated"] == 2  # the long prompt (dropped) and the 176-token tool conversation (kept, cut)
    assert all(len(x) <= 128 for x in tokenized["input_ids"])
    assert all(len(i) == len(m) and sum(m) > 0 for i, m in zip(tokenized["input_ids"], tokenized["assistant_masks"],
                                                                strict=True))
    full = gpt_oss_tokenizer(tool_conversation(1), add_special_tokens=False)["input_ids"]
    assert tokenized["assistant_masks"][1] == HarmonyMasker(gpt_oss_tokenizer).mask(full)[:128]
    assert stats["trained_tokens"] == sum(sum(m) for m in tokenized["assistant_masks"])


def test_render_mask_colours_trained_tokens(gpt_oss_tokenizer):
    text = "<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>Hello<|return|>"
    ids = gpt_oss_tokenizer(text, add_special_tokens=False)["input_ids"]
    rendered = render_mask(ids, HarmonyMasker(gpt_oss_tokenizer).mask(ids), gpt_oss_tokenizer)
    assert rendered.plain == text
    green = [rendered.plain[s.start:s.end] for s in rendered.spans if "green" in str(s.style)]
    dim = [rendered.plain[s.start:s.end] for s in rendered.spans if str(s.style) == "dim"]
    control = [rendered.plain[s.start:s.end] for s in rendered.spans if "bright_cyan" in str(s.style)]
    assert green == ["final", "Hello"] and dim == ["user", "Hi", "assistant"]
    assert control == ["<|channel|>", "<|message|>", "<|return|>"]


@pytest.mark.parametrize("config_name, script_cls, config_cls", [
    ("tool_calling_sft.yaml", ToolCallingScriptArguments, ToolCallingSFTConfig),
    ("agent_sft.yaml", AgentScriptArguments, AgentSFTConfig),
])
def test_phase_yaml_parses_and_cli_wins(config_name, script_cls, config_cls, tmp_path):
    script_args, training_args = parse_phase_args(
        script_cls, config_cls, REPO / "configs" / config_name,
        ["--max_seq_length", "128", "--lora_r", "8", "--output_dir", str(tmp_path / "unused-sft-out")])
    assert script_args.lora_r == 8 and training_args.max_seq_length == 128 and training_args.max_length == 128
    assert training_args.output_dir == str(tmp_path / "unused-sft-out")
    assert training_args.logging_steps == 1 and training_args.router_aux_loss_coef == 0.0
    precision = detect_precision()  # the configs leave these to the machine: fp32 + use_cpu on CPU, bf16 on CUDA
    assert training_args.bf16 == precision.bf16 and training_args.use_cpu == (precision.device == "cpu")
    assert training_args.gradient_checkpointing == (precision.device == "cuda")


def test_agent_flags_from_the_writeup():
    script_args, training_args = parse_phase_args(
        AgentScriptArguments, AgentSFTConfig, REPO / "configs" / "agent_sft.yaml",
        ["--base_model", "m", "--no-merge-lang-adapter", "--no-packing", "--eval_strategy", "no",
         "--max_seq_length", "256"])
    assert script_args.no_merge_lang_adapter and script_args.lang_adapter is None
    assert training_args.packing is False and training_args.max_seq_length == 256
    _, defaults = parse_phase_args(AgentScriptArguments, AgentSFTConfig, REPO / "configs" / "agent_sft.yaml", [])
    assert defaults.packing is True and defaults.max_seq_length == 32768 and defaults.num_train_epochs == 3
    with pytest.raises(ValueError, match="contradict"):
        parse_phase_args(AgentScriptArguments, AgentSFTConfig, REPO / "configs" / "agent_sft.yaml",
                         ["--lang_adapter", "x", "--no-merge-lang-adapter"])


def test_resolve_resume_checkpoint(tmp_path):
    """The phase scripts' --resume_from_checkpoint auto follows the orchestrator's rule (checkpoints.py): a
    checkpoint whose weights are truncated is passed over as one without trainer_state.json is."""
    from safetensors.numpy import save_file

    assert resolve_resume_checkpoint(None, tmp_path) is None
    assert resolve_resume_checkpoint("auto", tmp_path / "missing") is None
    for step in (2, 10, 11):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        save_file({"w": np.zeros(16, dtype=np.float32)}, str(ckpt / "adapter_model.safetensors"))
    weights = tmp_path / "checkpoint-11" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16])  # disk full while saving
    (tmp_path / "checkpoint-12").mkdir()  # interrupted while saving: no trainer_state.json
    assert resolve_resume_checkpoint("auto", tmp_path) == str(tmp_path / "checkpoint-10")
    with pytest.raises(FileNotFoundError, match="checkpoint-12"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-12"), tmp_path)
    with pytest.raises(FileNotFoundError, match="truncated"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-11"), tmp_path)


# ------------------------------------------------------------------------------- the phase scripts, end to end
def _hand_cross_entropy(model, rows: list[dict], shift: int = 1) -> float:
    """Mean next-token cross-entropy over the assistant-masked tokens, one unpadded row at a time: token t is
    predicted from the logits at t - ``shift`` (1 is right; 0 is the off-by-one bug the negative control plants)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    for row in rows:
        ids = torch.tensor(row["input_ids"])
        mask = torch.tensor(row["assistant_masks"], dtype=torch.bool)
        with torch.no_grad():
            log_probs = F.log_softmax(model(input_ids=ids[None]).logits[0].float(), dim=-1)
        positions = torch.nonzero(mask[1:]).squeeze(-1) + 1  # trained tokens that have a predecessor
        total -= log_probs[positions - shift, ids[positions]].sum().item()
        count += len(positions)
    return total / count


def test_trainer_sft_loss_is_cross_entropy_over_assistant_tokens(tiny_model_dir, gpt_oss_tokenizer, tmp_path):
    """TRL's compute_loss (fused LM head -> pipeline_lib.trl_cpu on CPU) == cross-entropy by hand over exactly the
    assistant-masked tokens; no training step."""
    import torch
    from datasets import Dataset

    from pipeline_lib.modeling import load_causal_lm
    from pipeline_lib.sft import SFTData, build_sft_trainer

    raw = Dataset.from_dict({"text": mixed_texts(2)})
    train, stats = tokenize_sft_dataset(raw, gpt_oss_tokenizer, 256)
    assert 0 < stats["trained_tokens"] < stats["tokens"]  # some context is not trained: the mask matters
    model = load_causal_lm(str(tiny_model_dir))
    args = ToolCallingSFTConfig(output_dir=str(tmp_path), max_seq_length=256, per_device_train_batch_size=2,
                                router_aux_loss_coef=0.0, report_to="none")
    trainer = build_sft_trainer(model, gpt_oss_tokenizer, args, SFTData(train, None, False, {"packing": None}))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(train))])
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, {k: v.to(model.device) for k, v in batch.items()}).item()
    rows = [train[i] for i in range(len(train))]
    assert loss == pytest.approx(_hand_cross_entropy(model, rows), abs=1e-4)
    # Negative control: targets one position off (logits at t scored against token t) must not match.
    assert abs(loss - _hand_cross_entropy(model, rows, shift=0)) > 1e-2


def test_unpacked_rows_padded_to_flex_block_only_under_flex(tiny_model_dir, gpt_oss_tokenizer, tmp_path):
    """Unpacked SFT batches under flex_attention are whole 128-token blocks (a batch of shorter rows fails in
    inductor's flex decoding kernel on CUDA, as IPO's did on the H200); under eager (CPU) nothing changes, which is
    also the control: the same rows collate to a length that is not a multiple of 128."""
    from datasets import Dataset

    from pipeline_lib.modeling import load_causal_lm
    from pipeline_lib.sft import SFTData, build_sft_trainer

    train, _ = tokenize_sft_dataset(Dataset.from_dict({"text": mixed_texts(2)}), gpt_oss_tokenizer, 256)
    model = load_causal_lm(str(tiny_model_dir))
    lengths = {}
    for impl in ("eager", "flex_attention"):
        model.config._attn_implementation = impl  # read by flex_pad_multiple only; nothing runs a forward here
        args = ToolCallingSFTConfig(output_dir=str(tmp_path / impl), max_seq_length=256, per_device_train_batch_size=2,
                                    router_aux_loss_coef=0.0, report_to="none")
        trainer = build_sft_trainer(model, gpt_oss_tokenizer, args, SFTData(train, None, False, {"packing": None}))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(train))])
        lengths[impl] = (args.pad_to_multiple_of, batch["input_ids"].shape[1], int(batch["attention_mask"].sum()))
    assert lengths["flex_attention"][0] == 128 and lengths["flex_attention"][1] % 128 == 0
    assert lengths["eager"][0] is None and lengths["eager"][1] % 128 != 0
    assert lengths["eager"][2] == lengths["flex_attention"][2]  # the same real tokens; only padding was added


def run_script(name: str, args: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *args])
    runpy.run_path(str(REPO / "scripts" / name), run_name="__main__")


@pytest.fixture(scope="module")
def sft_dataset(tmp_path_factory) -> Path:
    return write_text_dataset(tmp_path_factory.mktemp("sft") / "train", mixed_texts(12))


@pytest.fixture(scope="module")
def phase1_run(tiny_model_dir, sft_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phase1") / "run"
    mp = pytest.MonkeyPatch()
    mp.delenv("HF_TOKEN", raising=False)  # --hub_token becomes this process's HF_TOKEN; undo() removes it again
    try:
        run_script("13_train_lang_adapter.py", [
            "--model_name_or_path", str(tiny_model_dir), "--train_data_path", str(sft_dataset), "--max_steps", "3",
            "--num_train_epochs", "1", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
            "--max_seq_length", "128", "--output_dir", str(out), "--save_steps", "1", "--lora_r", "8",
            "--logging_steps", "1", "--backend", "hf", "--print_mask_example", "--hub_token", HUB_TOKEN_CANARY], mp)
    finally:
        mp.undo()
    return out


@pytest.mark.slow
def test_phase1_script_writes_final(phase1_run):
    final = phase1_run / "final"
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "trainer_state.json",
                 "provenance.json", "phase_metrics.json"):
        assert (final / name).is_file(), name
    metrics = json.loads((final / "phase_metrics.json").read_text())
    assert metrics["phase"] == "tool_calling_sft" and metrics["global_step"] == 3 and metrics["lora_r"] == 8
    assert metrics["lora_update_check"]["passed"] and metrics["lora_update_check"]["experts_trained"]
    assert metrics["trainable_params"] == metrics["trainable"]["lora_attention"] + metrics["trainable"]["lora_experts"]
    assert metrics["avg_loss_last_10"] is not None and metrics["first_loss"] > 10  # random init: ~ln(201088)=12.2
    assert metrics["eval_token_accuracy"] is None and metrics["packing"] == {"packed": False}
    adapter = json.loads((final / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["target_parameters"] == ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    assert json.loads((final / "provenance.json").read_text())["config"]["script_args"]["lora_r"] == 8
    # The training process recorded its logits; plain PEFT (merge/IPO/export's loader) reproduces them.
    assert metrics["fingerprint"]["compute_dtype"] == "float32" and metrics["fingerprint"]["adapter_effect_rel"] > 0
    from peft import PeftModel

    from pipeline_lib.fingerprint import verify_fingerprint
    from pipeline_lib.modeling import load_causal_lm

    base = load_causal_lm(json.loads((final / "adapter_config.json").read_text())["base_model_name_or_path"])
    check = verify_fingerprint(PeftModel.from_pretrained(base, str(final)), final)
    assert check["passed"] and check["value"] < 1e-4 and check["recorded_by"] == "hf", check


@pytest.mark.slow
def test_hub_token_reaches_no_file_of_the_run(phase1_run):
    """--hub_token on the command line: not in provenance.json's command, not in any training_args.bin."""
    import torch

    written = [p for p in phase1_run.rglob("*") if p.is_file()]
    assert {p.parent.name for p in written if p.name == "training_args.bin"} >= {"checkpoint-1", "final"}
    for path in written:
        assert HUB_TOKEN_CANARY.encode() not in path.read_bytes(), path
    command = json.loads((phase1_run / "final" / "provenance.json").read_text())["command"]
    assert command[command.index("--hub_token") + 1] == "<redacted>"
    args = torch.load(phase1_run / "final" / "training_args.bin", weights_only=False)
    assert args.hub_token is None and args.output_dir == str(phase1_run)


@pytest.mark.slow
def test_resume_continues_step_count_and_loss_curve(phase1_run, tiny_model_dir, sft_dataset, tmp_path, monkeypatch):
    import shutil

    run = tmp_path / "resumed"
    run.mkdir()
    shutil.copytree(phase1_run / "checkpoint-1", run / "checkpoint-1")
    run_script("13_train_lang_adapter.py", [
        "--model_name_or_path", str(tiny_model_dir), "--train_data_path", str(sft_dataset), "--max_steps", "3",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
        "--max_seq_length", "128", "--output_dir", str(run), "--save_steps", "1", "--lora_r", "8",
        "--logging_steps", "1", "--backend", "hf", "--resume_from_checkpoint", "auto"], monkeypatch)
    metrics = json.loads((run / "final" / "phase_metrics.json").read_text())
    assert metrics["resumed_from_step"] == 1 and metrics["global_step"] == 3
    resumed = json.loads((run / "final" / "trainer_state.json").read_text())["log_history"]
    original = json.loads((phase1_run / "final" / "trainer_state.json").read_text())["log_history"]
    resumed_losses = [(e["step"], e["loss"]) for e in resumed if "loss" in e]
    original_losses = [(e["step"], e["loss"]) for e in original if "loss" in e]
    assert [s for s, _ in resumed_losses] == [1, 2, 3]
    assert resumed_losses[0] == original_losses[0]  # step 1 comes from checkpoint-1's history, not a new run
    # Same data order, same adapter at step 1 (restored RNG and weights): the continued curve matches the
    # uninterrupted one.
    assert [v for _, v in resumed_losses] == pytest.approx([v for _, v in original_losses], abs=1e-4)


@pytest.mark.slow
def test_resume_from_a_checkpoint_at_max_steps_trains_no_extra_step(phase1_run, tiny_model_dir, sft_dataset, tmp_path,
                                                                    monkeypatch):
    """checkpoint-3 of a max_steps 3 run, 6 steps per epoch: transformers alone trained a 4th step (agent SFT:
    checkpoint-30 with max_steps 30 ended at global_step 31). The final adapter is checkpoint-3's, untouched."""
    import shutil

    import torch
    from safetensors.torch import load_file

    run = tmp_path / "at_max_steps"
    run.mkdir()
    shutil.copytree(phase1_run / "checkpoint-3", run / "checkpoint-3")
    run_script("13_train_lang_adapter.py", [
        "--model_name_or_path", str(tiny_model_dir), "--train_data_path", str(sft_dataset), "--max_steps", "3",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
        "--max_seq_length", "128", "--output_dir", str(run), "--save_steps", "1", "--lora_r", "8",
        "--logging_steps", "1", "--backend", "hf", "--resume_from_checkpoint", "auto"], monkeypatch)
    metrics = json.loads((run / "final" / "phase_metrics.json").read_text())
    assert metrics["resumed_from_step"] == 3 and metrics["global_step"] == 3 == metrics["max_steps"]
    assert not (run / "checkpoint-4").exists()
    saved = load_file(str(run / "checkpoint-3" / "adapter_model.safetensors"))
    final = load_file(str(run / "final" / "adapter_model.safetensors"))
    assert saved.keys() == final.keys() and all(torch.equal(saved[k], final[k]) for k in saved)
    state = json.loads((run / "final" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3]


@pytest.mark.slow
def test_phase2_script_packs_evaluates_and_merges_lang_adapter(phase1_run, tiny_model_dir, sft_dataset, tmp_path,
                                                               monkeypatch):
    out = tmp_path / "agent"
    args = ["--base_model", str(tiny_model_dir), "--train_data_path", str(sft_dataset), "--max_steps", "3",
            "--num_train_epochs", "1", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1",
            "--max_seq_length", "256", "--output_dir", str(out), "--save_steps", "3", "--lora_r", "4",
            "--eval_strategy", "steps", "--eval_steps", "3", "--eval_split_size", "2", "--backend", "hf"]
    run_script("14_train_core_agent.py", [*args, "--lang_adapter", str(phase1_run / "final")], monkeypatch)
    metrics = json.loads((out / "final" / "phase_metrics.json").read_text())
    packed_dir = sft_dataset.with_name("train_packed_256")
    assert metrics["packing"]["packed"] and metrics["packing"]["source"] == "packed now"
    assert metrics["packing"]["folder"] == str(packed_dir) and (packed_dir / "pack_info.json").is_file()
    assert metrics["packing"]["conversations"] == 10 and metrics["packing"]["rows"] < 10
    assert metrics["packing"]["collation_check"]["passed"]
    assert metrics["packing"]["collation_check"]["conversations_checked"] > metrics["packing"]["collation_check"][
        "rows_checked"]
    assert metrics["eval_rows"] == 2 and metrics["eval_token_accuracy"] is not None
    assert metrics["merged_adapter"] == str(phase1_run / "final") and metrics["lora_update_check"]["passed"]
    assert metrics["global_step"] == 3 and metrics["lora_r"] == 4


@pytest.mark.slow
def test_phase2_fast_backend_trains_packed_and_logs_its_path(tiny_model_dir, sft_dataset, tmp_path, monkeypatch,
                                                            capsys):
    """--backend fast through the real Phase 2 script: packed rows, the packed-attention and collation checks pass,
    every expert LoRA tensor trains, and the phase says which path ran (log line + phase_metrics.json)."""
    out = tmp_path / "agent_fast"
    run_script("14_train_core_agent.py", [
        "--base_model", str(tiny_model_dir), "--train_data_path", str(sft_dataset), "--max_steps", "2",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "1",
        "--max_seq_length", "256", "--output_dir", str(out), "--save_steps", "100", "--lora_r", "4",
        "--eval_strategy", "no", "--learning_rate", "1e-3", "--warmup_steps", "0", "--backend", "fast"], monkeypatch)
    metrics = json.loads((out / "final" / "phase_metrics.json").read_text())
    assert metrics["backend"] == "fast" and metrics["training_path"].startswith("fast: expert LoRA as split")
    assert metrics["packing"]["packed"] and metrics["packing"]["collation_check"]["passed"]
    assert metrics["lora_update_check"]["passed"] and metrics["lora_update_check"]["experts_trained"]
    assert "training path: fast: expert LoRA as split grouped GEMMs" in capsys.readouterr().out
