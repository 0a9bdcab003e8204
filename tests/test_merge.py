"""Phase 1.5 merge: merged == base+adapter (experts included), with the negative control that drops expert deltas."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_lib.merge import (
    MANIFEST_FILE,
    merge_adapter,
    merge_manifest_passed,
    saved_equals_state,
    strip_quantization_config,
)

EXPERT_PARAMETERS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]


def make_tiny_adapter(base_dir: Path, out_dir: Path, *, seed: int = 0, b_std: float = 0.02) -> Path:
    """r=8 LoRA on q/k/v/o + both expert tensors; B random (PEFT zero-inits it) so every delta is non-zero."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        target_parameters=EXPERT_PARAMETERS)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, b_std)
    peft_model.save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dir: Path, tmp_path_factory) -> Path:
    return make_tiny_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter") / "final")


@pytest.fixture(scope="module")
def merged(tiny_model_dir: Path, tiny_adapter: Path, tmp_path_factory) -> tuple[Path, dict]:
    hf = tmp_path_factory.mktemp("merged") / "hf"
    return hf, merge_adapter(str(tiny_model_dir), tiny_adapter, hf)


def test_adapter_has_expert_lora(tiny_adapter: Path) -> None:
    from safetensors import safe_open

    config = json.loads((tiny_adapter / "adapter_config.json").read_text())
    assert sorted(config["target_parameters"]) == sorted(EXPERT_PARAMETERS)
    with safe_open(str(tiny_adapter / "adapter_model.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
    assert any("experts" in k and "lora_B" in k for k in keys), keys


def test_merged_logits_equal_base_plus_adapter(merged: tuple[Path, dict]) -> None:
    hf, manifest = merged
    check = manifest["checks"]["merged_equals_adapter"]
    assert check["passed"] and check["value"] <= check["threshold"] == 1e-4
    # The check has power: the adapter moves the logits by >1000x the merge error.
    assert check["adapter_effect_rel"] > 1000 * check["value"] and check["discriminative"]
    assert manifest["passed"] and merge_manifest_passed(hf) and merge_manifest_passed(hf / MANIFEST_FILE)


def test_manifest_checks_and_phase_metrics(merged: tuple[Path, dict]) -> None:
    from safetensors import safe_open

    hf, manifest = merged
    on_disk = json.loads((hf / MANIFEST_FILE).read_text())
    assert set(on_disk["checks"]) == {"merged_equals_adapter", "merged_weights_hold_delta", "smoke_test",
                                      "config_parses", "saved_equals_merged", "size"}
    for name, entry in on_disk["checks"].items():
        assert {"value", "threshold", "passed"} <= set(entry), name
    n_params = on_disk["checks"]["size"]["parameters"]
    assert on_disk["checks"]["size"]["threshold"] == int(0.9 * n_params * 2)  # bf16: 2 bytes per parameter
    with safe_open(str(next(hf.glob("*.safetensors"))), framework="pt") as fh:
        assert {str(fh.get_tensor(k).dtype) for k in fh.keys()} == {"torch.bfloat16"}
    config = json.loads((hf / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "gpt_oss"
    assert (hf / "chat_template.jinja").read_text().startswith("{#-")
    assert (hf / "tokenizer.json").is_file()
    metrics = json.loads((hf / "phase_metrics.json").read_text())
    assert metrics["size_gib"] == on_disk["checks"]["size"]["size_gib"] and metrics["smoke_test"] is True
    assert metrics["logits_check"]["passed"] is True


def test_merged_weights_hold_every_delta(merged: tuple[Path, dict]) -> None:
    """Every targeted tensor (4 attention projections + 2 expert tensors per layer) moved by exactly its delta."""
    hf, manifest = merged
    check = manifest["checks"]["merged_weights_hold_delta"]
    layers = json.loads((hf / "config.json").read_text())["num_hidden_layers"]
    assert check["passed"] and check["tensors"] == check["judged"] == 6 * layers, check
    assert check["ratio_by_kind"]["experts"]["tensors"] == 2 * layers
    assert abs(check["value"] - 1.0) < 1e-6 and check["retained_in_compute_dtype"] == pytest.approx(1.0, abs=1e-4)
    # the bf16 save keeps most but not all of an fp32 merge's change (rounding; the number is reported, not gated)
    assert 0.5 < check["retained_after_save_cast"] < 1.0 + 1e-3


def test_negative_control_expert_deltas_dropped(tiny_model_dir: Path, tiny_adapter: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A merge that folds only the attention LoRA (older unsloth-zoo) must fail both checks; the weight check names
    the expert tensors and only them."""
    from peft.tuners.lora.layer import ParamWrapper

    monkeypatch.setattr(ParamWrapper, "merge", lambda self, *args, **kwargs: None)
    manifest = merge_adapter(str(tiny_model_dir), tiny_adapter, tmp_path / "hf")
    check = manifest["checks"]["merged_equals_adapter"]
    assert not check["passed"] and check["value"] > 100 * check["threshold"]
    weights = manifest["checks"]["merged_weights_hold_delta"]
    assert not weights["passed"] and weights["failed_tensors"] == weights["ratio_by_kind"]["experts"]["tensors"]
    assert all("experts" in name for name in weights["failed_examples"]) and abs(weights["value"]) < 1e-6
    assert weights["ratio_by_kind"]["linear"]["min"] == pytest.approx(1.0, abs=1e-6)
    assert not manifest["passed"] and not merge_manifest_passed(tmp_path / "hf")


def test_half_applied_delta_fails_the_weight_check(tiny_model_dir: Path, tiny_adapter: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A merge that adds only half of each expert delta (a wrong scaling) passes nothing: ratio 0.5."""
    from peft.tuners.lora.layer import ParamWrapper

    original = ParamWrapper.get_delta_weight
    merging = {"on": False}

    def merge_half(self, *args, **kwargs):
        merging["on"] = True
        try:
            return original_merge(self, *args, **kwargs)
        finally:
            merging["on"] = False

    def delta(self, adapter_name, *args, **kwargs):
        full = original(self, adapter_name, *args, **kwargs)
        return full * 0.5 if merging["on"] else full

    original_merge = ParamWrapper.merge
    monkeypatch.setattr(ParamWrapper, "merge", merge_half)
    monkeypatch.setattr(ParamWrapper, "get_delta_weight", delta)
    weights = merge_adapter(str(tiny_model_dir), tiny_adapter, tmp_path / "hf")["checks"]["merged_weights_hold_delta"]
    assert not weights["passed"] and weights["ratio_by_kind"]["experts"]["max"] == pytest.approx(0.5, abs=0.01)


def test_saved_shards_equal_an_independent_merge(merged: tuple[Path, dict], tiny_model_dir: Path,
                                                 tiny_adapter: Path) -> None:
    """The written shards vs base + adapter merged here by PEFT itself (not read back from those shards)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    hf, _ = merged
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    state = PeftModel.from_pretrained(base, str(tiny_adapter)).merge_and_unload().to(torch.bfloat16).state_dict()
    assert saved_equals_state(hf, state)["passed"]
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    unmerged = saved_equals_state(hf, base.state_dict())  # negative control: the base without the adapter
    assert not unmerged["passed"] and unmerged["mismatched"]


def test_truncated_shard_fails_saved_check(merged: tuple[Path, dict], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    hf, _ = merged
    shard = next(hf.glob("*.safetensors"))
    state = load_file(str(shard))
    broken = tmp_path / "broken"
    broken.mkdir()
    data = shard.read_bytes()
    (broken / shard.name).write_bytes(data[: len(data) // 2])
    result = saved_equals_state(broken, state)
    assert not result["passed"] and result["errors"]


def test_strip_quantization_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_oss",
                                                      "quantization_config": {"quant_method": "mxfp4"}}))
    assert strip_quantization_config(tmp_path) is True
    assert "quantization_config" not in json.loads((tmp_path / "config.json").read_text())
    assert strip_quantization_config(tmp_path) is False


def test_merge_manifest_passed_rejects_failures(tmp_path: Path) -> None:
    from pipeline_lib.merge import REQUIRED_CHECKS

    good = {"checks": {name: {"value": 1, "threshold": 1, "passed": True} for name in REQUIRED_CHECKS}}
    assert merge_manifest_passed(good)
    # a manifest that passed every check it has but lacks one that proves the merge worked does not count
    assert not merge_manifest_passed({"checks": {"a": {"value": 1, "threshold": 1, "passed": True}}})
    failing = {"b": {"value": 0, "threshold": 1, "passed": False}}
    assert not merge_manifest_passed({"checks": {**good["checks"], **failing}})
    # an advisory check (hard: false, the bf16 logits check) that failed does not fail the manifest...
    advisory = {"merged_equals_adapter": {"value": 0.3, "threshold": 0.26, "passed": False, "hard": False}}
    assert merge_manifest_passed({"checks": {**good["checks"], **advisory}})
    # ...but without hard: false the same entry does (control)
    assert not merge_manifest_passed({"checks": {**good["checks"], "merged_equals_adapter": {"passed": False}}})
    assert not merge_manifest_passed({"checks": {}})
    assert not merge_manifest_passed(tmp_path / "missing")


def test_cli_rejects_bad_adapter_path(repo_root: Path, tmp_path: Path) -> None:
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)
    result = subprocess.run([sys.executable, str(repo_root / "scripts" / "19_merge_adapter.py"), "--adapter_path",
                             str(tmp_path / "nothing"), "--base_model", "x"], capture_output=True, text=True)
    assert result.returncode != 0 and "--adapter_path" in result.stderr


def test_cli_loads_merge_yaml_without_config(repo_root: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The orchestrator passes no --config: the script's default YAML (configs/merge.yaml) must still apply."""
    import importlib.util

    path = repo_root / "scripts" / "19_merge_adapter.py"
    spec = importlib.util.spec_from_file_location("merge_script_19", path)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # @dataclass looks its module up there
    spec.loader.exec_module(script)
    assert script.DEFAULT_CONFIG == repo_root / "configs" / "merge.yaml" and script.DEFAULT_CONFIG.is_file()
    # configs/merge.yaml repeats the dataclass defaults, so a value only a YAML sets proves it is read.
    yaml = tmp_path / "merge.yaml"
    yaml.write_text("quant: MXFP4_MOE\nsmoke_new_tokens: 7\n")
    monkeypatch.setattr(script, "DEFAULT_CONFIG", yaml)
    (tmp_path / "ckpt").mkdir()
    export = ["--export", "--model", "m", "--checkpoints_dir", str(tmp_path / "ckpt")]
    _, merge, gguf = script.parse_args(export)
    assert gguf.quants == ["MXFP4_MOE"] and merge.smoke_new_tokens == 7
    _, merge, gguf = script.parse_args([*export, "--smoke_new_tokens", "9"])
    assert merge.smoke_new_tokens == 9 and gguf.quants == ["MXFP4_MOE"]  # CLI wins over the YAML
    monkeypatch.setattr(script, "DEFAULT_CONFIG", tmp_path / "absent.yaml")
    assert script.parse_args(export)[1].smoke_new_tokens == 48  # negative control: no YAML, dataclass default


def test_bf16_merge_passes_and_dropped_expert_deltas_fail(tiny_model_dir: Path, tiny_adapter: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA path merges in bf16 (its forwards in fp32 arithmetic): the merged weights' bf16 rounding (0.011 here)
    is over any fp32-sized tolerance; a correct bf16 merge must pass and the dropped-expert merge must still fail
    (run in bf16 on the CPU)."""
    from peft.tuners.lora.layer import ParamWrapper

    from pipeline_lib.modeling import Precision

    bf16 = Precision("cpu", True, "bfloat16", "eager", None)
    good = merge_adapter(str(tiny_model_dir), tiny_adapter, tmp_path / "good", precision=bf16)
    check = good["checks"]["merged_equals_adapter"]
    assert check["compute_dtype"] == "bfloat16" and check["passed"] and check["discriminative"], check
    assert check["value"] > 1e-3, "bf16 rounding is real: an fp32 tolerance would have failed this correct merge"
    assert check["forward_dtype"] == "float32" and check["noise_rel"] < 1e-4, check  # float32_forward ran
    assert check["hard"] is False  # advisory in bf16; the weight check is the HARD one
    weights = good["checks"]["merged_weights_hold_delta"]
    assert weights["passed"] and abs(weights["value"] - 1.0) < 1e-6 and weights["unresolved"] == 0, weights
    # in bf16 part of a small delta rounds away; the check compares with that rounding, not with the exact delta
    assert weights["retained_in_compute_dtype"] < 1.0

    monkeypatch.setattr(ParamWrapper, "merge", lambda self, *args, **kwargs: None)
    dropped = merge_adapter(str(tiny_model_dir), tiny_adapter, tmp_path / "dropped", precision=bf16)
    check = dropped["checks"]["merged_equals_adapter"]
    assert not check["passed"] and check["value"] > 2 * check["threshold"], check
    assert not dropped["checks"]["merged_weights_hold_delta"]["passed"]
    assert not merge_manifest_passed(tmp_path / "dropped")
    assert dropped["advisory_failures"] == ["merged_equals_adapter"]


def _merge_script(repo_root: Path, monkeypatch: pytest.MonkeyPatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("merge_script_flags", repo_root / "scripts" / "19_merge_adapter.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # @dataclass looks its module up there
    spec.loader.exec_module(script)
    return script


def unreached_fields(parsed: tuple, classes: tuple, values: dict[str, str]) -> list[str]:
    """Fields of ``classes`` whose CLI value (``values``, all passed at once) did not land in the parsed object of
    that class."""
    import dataclasses

    by_class = {type(obj): obj for obj in parsed}
    missed = []
    for cls in classes:
        for f in dataclasses.fields(cls):
            got = getattr(by_class[cls], f.name)
            want = {"true": True, "false": False}.get(values[f.name], values[f.name])
            if str(got) != str(want) and not (isinstance(got, float) and got == float(want)):
                missed.append(f"{cls.__name__}.{f.name}")
    return missed


def test_every_settings_field_is_a_cli_flag(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """19_merge_adapter.py hands its parsed dataclasses to merge_adapter / export_model as they are: every field of
    the path arguments, MergeSettings and GgufSettings is reachable from the command line with a non-default value.
    Negative control: a parse that rebuilds MergeSettings by hand (the old field copy, one field forgotten) is
    caught."""
    import dataclasses

    script = _merge_script(repo_root, monkeypatch)
    llama = tmp_path / "llama.cpp"
    llama.mkdir()
    (llama / "convert_hf_to_gguf.py").write_text("")
    (tmp_path / "ckpt").mkdir()
    values = {
        "adapter_path": "a", "base_model": "b", "output_dir": str(tmp_path / "out"), "export": "true",
        "checkpoints_dir": str(tmp_path / "ckpt"), "model": "m", "merged_model": "mm", "gguf": "false",
        "save_dtype": "float16", "max_shard_size": "7GB", "logits_rel_tol_float32": "0.003",
        "logits_rel_tol_bfloat16": "0.2", "logits_bf16_effect_fraction": "0.3", "logits_bf16_noise_factor": "3.5",
        "delta_ratio_tol": "0.05", "delta_sample_elements": "1000", "min_size_fraction": "0.8",
        "smoke_new_tokens": "11", "smoke_min_unique_chars": "4", "quant": "Q8_0",
        "keep_bf16_gguf": "true", "threads": "3", "llama_cpp_dir": str(llama), "llama_cpp_sdist": "s.tar.gz",
        "gguf_bf16_rel_tol": "0.07", "gguf_bf16_sensitivity_factor": "1.5", "gguf_bf16_min_argmax_agreement": "0.9",
        "gguf_quant_min_correlation": "0.8",
        "gguf_quant_min_argmax_agreement": "0.4",
    }
    fields = {f.name: f for cls in script.ARGUMENT_CLASSES for f in dataclasses.fields(cls)}
    assert set(fields) == set(values), "a new settings field needs a value here"
    assert all(str(fields[k].default) != v for k, v in values.items() if k != "export")  # every value is new
    argv = [x for k, v in values.items() for x in (f"--{k}", v)]
    parsed = script.parse_args(argv)
    assert unreached_fields(parsed, script.ARGUMENT_CLASSES, values) == []

    args, merge, gguf = parsed
    by_hand = (args, dataclasses.replace(script.MergeSettings(), **{
        k: getattr(merge, k) for k in [f.name for f in dataclasses.fields(merge)] if k != "max_shard_size"}), gguf)
    assert unreached_fields(by_hand, script.ARGUMENT_CLASSES, values) == ["MergeSettings.max_shard_size"]
    with pytest.raises(SystemExit):  # a flag no dataclass has is refused, not ignored
        script.parse_args([*argv, "--logits_rel_tol", "0.1"])
