"""Every YAML in configs/ loads through the code that uses it (torchtune-style config check): a typo'd key or an
out-of-range value fails here, not hours into a run. A new config file without a validator below fails too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def validate_batch_profiles(path: Path) -> None:
    from pipeline_lib.profiles import PHASES, PROFILE_NAMES, load_profiles, resolve

    load_profiles(path)
    # writeup §6 tables, spot-checked: balanced tool-calling 8 x 6 @ 8192, agent 1 x 24 @ 32768.
    assert resolve("balanced", "tool_calling_sft", path=path).effective_batch == 48
    assert resolve("balanced", "agent_sft", path=path).seq == 32768
    for profile in PROFILE_NAMES:
        for phase in PHASES:
            resolve(profile, phase, path=path)


def validate_gates(path: Path) -> None:
    from pipeline_lib.gates import GATE_PROFILES, load_gate_specs

    for profile in GATE_PROFILES:
        specs = load_gate_specs(profile, path)
        assert {s.type for s in specs.values()} <= {"HARD", "SOFT"}
    default = load_gate_specs("default", path)
    # writeup §8 table, for the real 20B model
    assert (default["tool_calling_sft"].op, default["tool_calling_sft"].threshold) == ("<=", 2.0)
    assert (default["agent_sft"].op, default["agent_sft"].threshold) == ("<=", 1.8)
    assert (default["grpo"].op, default["grpo"].threshold, default["grpo"].type) == (">", 0.55, "SOFT")
    assert default["ipo"].type == "SOFT" and default["merge"].type == "HARD"
    tiny = load_gate_specs("tiny", path)
    # a random-init tiny model starts at ln(201088) = 12.21: a tiny threshold must sit below that
    assert tiny["tool_calling_sft"].threshold < 12.2 and tiny["agent_sft"].threshold < 12.2


def validate_data_prep(path: Path) -> None:
    from pipeline_lib.data_prep import load_limits

    config = yaml.safe_load(path.read_text())
    assert config["source"] in ("hub", "local")
    assert load_limits(config)
    assert 0 <= config["tool_calling_heldout"]["quick"] <= config["tool_calling_heldout"]["full"]


def _validate_sft(script_cls_name: str, config_cls_name: str):
    def validate(path: Path) -> None:
        from pipeline_lib import sft_config as sft

        script_args, training_args = sft.parse_phase_args(getattr(sft, script_cls_name),
                                                          getattr(sft, config_cls_name), path, argv=[])
        assert training_args.output_dir

    return validate


def validate_ipo(path: Path) -> None:
    """Every key is a field of IPOScriptArguments or IPOConfig, and IPOConfig accepts its share (the script args
    check that the adapter folder exists, so they are not constructed here)."""
    import dataclasses

    from pipeline_lib import ipo
    from pipeline_lib.modeling import detect_precision

    data = yaml.safe_load(path.read_text())
    script_fields = {f.name for f in dataclasses.fields(ipo.IPOScriptArguments)}
    config_fields = {f.name for f in dataclasses.fields(ipo.IPOConfig)}
    unknown = set(data) - script_fields - config_fields
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    args = ipo.IPOConfig(**{**detect_precision().trainer_kwargs(), **{k: v for k, v in data.items()
                                                                      if k in config_fields}})
    assert args.beta > 0


def validate_grpo(path: Path) -> None:
    """Every key is a field of GRPOScriptArguments or GRPOPhaseConfig, GRPOPhaseConfig accepts its share and the
    reward weights make a RewardWeights (the script args check that the task file and adapter exist, so they are
    not constructed here)."""
    import dataclasses

    from pipeline_lib import grpo
    from pipeline_lib.modeling import detect_precision
    from pipeline_lib.rewards import RewardWeights

    data = yaml.safe_load(path.read_text())
    script_fields = {f.name for f in dataclasses.fields(grpo.GRPOScriptArguments)}
    config_fields = {f.name for f in dataclasses.fields(grpo.GRPOPhaseConfig)}
    unknown = set(data) - script_fields - config_fields
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    args = grpo.GRPOPhaseConfig(**{**detect_precision().trainer_kwargs(), **{k: v for k, v in data.items()
                                                                             if k in config_fields}})
    assert args.num_generations >= 2 and args.generation_batch_size % args.num_generations == 0
    RewardWeights(**{k.removeprefix("reward_"): v for k, v in data.items()
                     if k.startswith("reward_") and k != "reward_workers"})


def validate_merge(path: Path) -> None:
    """Keys are fields of the script's ARGUMENT_CLASSES (scripts/19_merge_adapter.py: its path arguments,
    merge.MergeSettings, gguf_export.GgufSettings; TrlParser would reject others) with the defaults' types; the path
    arguments check paths in __post_init__, so nothing is constructed here."""
    import dataclasses
    import importlib.util

    spec = importlib.util.spec_from_file_location("merge_script", REPO / "scripts" / "19_merge_adapter.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    fields = {f.name: f for cls in module.ARGUMENT_CLASSES for f in dataclasses.fields(cls)}
    for key, value in yaml.safe_load(path.read_text()).items():
        if key not in fields:
            raise ValueError(f"{path}: unknown key {key!r}")
        default = fields[key].default
        # YAML reads "1" as an int: accept it for a float field (min_size_fraction: 1).
        allowed = (int, float) if isinstance(default, float) else type(default)
        if default is not None and not isinstance(value, allowed):
            raise ValueError(f"{path}: {key} should be {type(default).__name__}, got {value!r}")
    assert 0 < yaml.safe_load(path.read_text())["min_size_fraction"] <= 1


def validate_random_weight_gates(path: Path) -> None:
    """Read as --gates-config by scripts/gpu_smoke.sh (default section only): loss gates sit between the uniform
    start ln(201088) = 12.21 and a blow-up; the structural gates are the real model's."""
    import math

    from pipeline_lib.gates import load_gate_specs

    specs = load_gate_specs("default", path)
    real = load_gate_specs("default", REPO / "configs" / "gates.yaml")
    for phase in ("tool_calling_sft", "agent_sft"):
        assert specs[phase].op == "<=" and math.log(201088) < specs[phase].threshold < math.log(201088) + 1
    for phase in ("merge", "ipo", "export"):
        assert specs[phase] == real[phase], phase


def validate_eval(path: Path) -> None:
    """Keys are EvalConfig fields with the defaults' types (EvalConfig checks the model and data paths when it is
    constructed, so it is not constructed here); the language matches the file name."""
    import dataclasses

    from pipeline_lib.evaluation import EvalConfig

    fields = {f.name: f for f in dataclasses.fields(EvalConfig)}
    data = yaml.safe_load(path.read_text())
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"{path}: unknown key {key!r}")
        default = fields[key].default
        if default is not None and value is not None and not isinstance(value, type(default)):
            raise ValueError(f"{path}: {key} should be {type(default).__name__}, got {value!r}")
    assert path.name == f"{data['language']}_eval.yaml"
    assert data["task_file"] == f"data/{data['language']}/grpo/heldout.jsonl"  # the held-out split, never train


LANGUAGE_KEYS = {"base_model", "train_data_path", "output_dir"}  # what core_agent.yaml changes from agent_sft.yaml


def validate_core_agent(path: Path) -> None:
    """Loads like agent_sft.yaml, points at a language trajectory dataset, otherwise has agent_sft.yaml's values."""
    _validate_sft("AgentScriptArguments", "AgentSFTConfig")(path)
    core = yaml.safe_load(path.read_text())
    agent = yaml.safe_load((REPO / "configs" / "agent_sft.yaml").read_text())
    drift = {k for k in core.keys() | agent.keys() if core.get(k) != agent.get(k)} - LANGUAGE_KEYS
    if drift:
        raise ValueError(f"{path}: differs from agent_sft.yaml in {sorted(drift)} (only {sorted(LANGUAGE_KEYS)} may)")
    assert core["train_data_path"].endswith("/agent_traj/train") and "coding_tui" not in core["train_data_path"]


def validate_throughput(path: Path) -> None:
    """pipeline_lib.estimate loads it (every row complete, tokens/s > 0); rows name real phases and backends."""
    from pipeline_lib.estimate import load_throughput
    from pipeline_lib.orchestrate import TRAINED_PHASES

    table = load_throughput(path)
    assert table.training and table.merge
    for m in table.training:
        assert m.phase in TRAINED_PHASES and m.backend in ("hf", "unsloth", "fast"), m
        assert "docs/BENCHMARKS.md" in m.source, m  # every figure is one we measured and recorded


def validate_accelerate(path: Path) -> None:
    """accelerate reads it as a launch config (run_tui_pipeline.sh --gpus N passes it to `accelerate launch`)."""
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(path))
    assert config.distributed_type == "MULTI_GPU" and config.num_machines == 1


def validate_accelerate_fsdp2(path: Path) -> None:
    """accelerate reads it as an FSDP2 launch config sharding per decoder layer, saving a full (plain PEFT) state."""
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(path))
    assert config.distributed_type == "FSDP" and config.num_machines == 1
    fsdp = config.fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "GptOssDecoderLayer"


VALIDATORS = {
    "ddp.yaml": validate_accelerate,
    "fsdp2.yaml": validate_accelerate_fsdp2,
    "throughput.yaml": validate_throughput,
    "gates_random_weights.yaml": validate_random_weight_gates,
    "core_agent.yaml": validate_core_agent,
    "python_eval.yaml": validate_eval,
    "rust_eval.yaml": validate_eval,
    "merge.yaml": validate_merge,
    "batch_profiles.yaml": validate_batch_profiles,
    "gates.yaml": validate_gates,
    "data_prep.yaml": validate_data_prep,
    "tool_calling_sft.yaml": _validate_sft("ToolCallingScriptArguments", "ToolCallingSFTConfig"),
    "agent_sft.yaml": _validate_sft("AgentScriptArguments", "AgentSFTConfig"),
    "ipo.yaml": validate_ipo,
    "grpo.yaml": validate_grpo,
}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_through_its_code(path: Path):
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict) and data, f"{path}: expected a non-empty mapping"
    assert path.name in VALIDATORS, f"{path.name}: add a validator to tests/test_configs.py (STYLE §3-4)"
    VALIDATORS[path.name](path)


def test_validators_reject_a_broken_config(tmp_path):
    """Negative control: the validators are not just yaml.safe_load."""
    broken = tmp_path / "gates.yaml"
    broken.write_text((REPO / "configs" / "gates.yaml").read_text().replace("threshold: 2.0", "threshold: two"))
    with pytest.raises(ValueError):
        validate_gates(broken)
    profiles = tmp_path / "batch_profiles.yaml"
    profiles.write_text((REPO / "configs" / "batch_profiles.yaml").read_text().replace("accum: 6,", "acum: 6,", 1))
    with pytest.raises(ValueError):
        validate_batch_profiles(profiles)
    sft_yaml = tmp_path / "tool_calling_sft.yaml"
    sft_yaml.write_text((REPO / "configs" / "tool_calling_sft.yaml").read_text() + "\nno_such_key: 1\n")
    with pytest.raises((ValueError, SystemExit)):
        VALIDATORS["tool_calling_sft.yaml"](sft_yaml)
    merge_yaml = tmp_path / "merge.yaml"
    merge_yaml.write_text((REPO / "configs" / "merge.yaml").read_text().replace("min_size_fraction: 0.9",
                                                                                "min_size_fraction: lots"))
    with pytest.raises(ValueError, match="min_size_fraction"):
        validate_merge(merge_yaml)
    merge_yaml.write_text((REPO / "configs" / "merge.yaml").read_text().replace("min_size_fraction: 0.9",
                                                                                "min_size_fraction: 1"))
    validate_merge(merge_yaml)  # an int for a float field is a valid YAML spelling, not a broken config
    ipo_yaml = tmp_path / "ipo.yaml"
    ipo_yaml.write_text((REPO / "configs" / "ipo.yaml").read_text() + "\nbetta: 0.1\n")
    with pytest.raises(ValueError, match="betta"):
        validate_ipo(ipo_yaml)
    eval_yaml = tmp_path / "python_eval.yaml"
    eval_yaml.write_text((REPO / "configs" / "python_eval.yaml").read_text() + "\nmax_task: 3\n")
    with pytest.raises(ValueError, match="max_task"):
        validate_eval(eval_yaml)
    eval_yaml.write_text((REPO / "configs" / "python_eval.yaml").read_text().replace("batch_size: 1",
                                                                                     "batch_size: one"))
    with pytest.raises(ValueError, match="batch_size"):
        validate_eval(eval_yaml)
    core_yaml = tmp_path / "core_agent.yaml"
    core_yaml.write_text((REPO / "configs" / "core_agent.yaml").read_text().replace("lora_r: 128", "lora_r: 64"))
    with pytest.raises(ValueError, match="lora_r"):
        validate_core_agent(core_yaml)
    grpo_yaml = tmp_path / "grpo.yaml"
    grpo_yaml.write_text((REPO / "configs" / "grpo.yaml").read_text() + "\nnum_generation: 4\n")
    with pytest.raises(ValueError, match="num_generation"):
        validate_grpo(grpo_yaml)
    grpo_text = (REPO / "configs" / "grpo.yaml").read_text()
    grpo_yaml.write_text(grpo_text.replace("reward_tests: 0.6", "reward_tests: 0.7"))
    with pytest.raises(ValueError, match="sum to 1"):
        validate_grpo(grpo_yaml)
