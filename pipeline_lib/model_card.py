"""What makes the export ready to use: a model card (``<export>/hf/README.md``) and an Ollama ``Modelfile`` beside the
GGUF (``<export>/gguf_q4/Modelfile``). Both are written by ``gguf_export.export_model``; every input is read
defensively (a missing or odd file becomes a line saying so, never an exception that loses the export).

    ollama create coding-tui -f checkpoints/<slug>-coding-tui-export/gguf_q4/Modelfile && ollama run coding-tui
    cd checkpoints/<slug>-coding-tui-export
    llama-cli -m gguf_q4/<slug>-coding-tui-Q4_K_M.gguf --jinja --chat-template-file hf/chat_template.jinja -cnv
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Training order; the folder names are gguf_export.ADAPTER_PRIORITY's (the phase table will own them).
GGUF_PREFERENCE = ("Q4_K_M", "MXFP4_MOE", "BF16")  # the Modelfile's FROM: the first of these that passed validation
HARMONY_STOPS = ("<|return|>", "<|call|>")  # Harmony's two end-of-generation tokens (final answer, tool call)

# The GPT-OSS Harmony format as an Ollama (Go text/template) template, written to match pipeline_lib.harmony's
# rendering (openai_harmony) of the same conversation: system header, developer message (# Instructions + # Tools),
# user turns, earlier final answers (their analysis dropped), tool calls (analysis kept before a call), tool results,
# and the open assistant header. Ollama's fields: .System (system messages), .Tools[].Function.{Name,Description,
# Parameters}, .Messages[].{Role,Content,Thinking,ToolCalls,ToolName}. Two deviations a Go template cannot avoid:
# tool parameters are shown as their JSON schema (Harmony writes TypeScript, which Go templates cannot derive from a
# schema), and call arguments are Go's compact JSON ({"cmd":"ls"}) where openai_harmony writes {"cmd": "ls"}.
OLLAMA_HARMONY_TEMPLATE = """<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.
Knowledge cutoff: 2024-06

Reasoning: medium

# Valid channels: analysis, commentary, final. Channel must be included for every message.
{{- if .Tools }}
Calls to these tools must go to the commentary channel: 'functions'.
{{- end }}<|end|>
{{- if or .System .Tools }}<|start|>developer<|message|>
{{- if .System }}# Instructions

{{ .System }}
{{- if .Tools }}

{{ end }}
{{- end }}
{{- if .Tools }}# Tools

## functions

namespace functions {
{{- range .Tools }}

// {{ .Function.Description }}
type {{ .Function.Name }} = (_: {{ json .Function.Parameters }}) => any;
{{- end }}

} // namespace functions
{{- end }}<|end|>
{{- end }}
{{- range .Messages }}
{{- if eq .Role "user" }}<|start|>user<|message|>{{ .Content }}<|end|>
{{- else if eq .Role "assistant" }}
{{- if .ToolCalls }}
{{- if .Thinking }}<|start|>assistant<|channel|>analysis<|message|>{{ .Thinking }}<|end|>
{{- end }}
{{- range .ToolCalls }}<|start|>assistant to=functions.{{ .Function.Name }}<|channel|>commentary <|constrain|>json\
<|message|>{{ json .Function.Arguments }}<|call|>
{{- end }}
{{- else }}<|start|>assistant<|channel|>final<|message|>{{ .Content }}<|end|>
{{- end }}
{{- else if eq .Role "tool" }}<|start|>functions.{{ .ToolName }} to=assistant<|channel|>commentary<|message|>\
{{ .Content }}<|end|>
{{- end }}
{{- end }}<|start|>assistant"""


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text()), None
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as err:
        return None, f"unreadable ({type(err).__name__})"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")[:120]


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def phase_rows(checkpoints_dir: Path, phases: list[tuple[str, str]]) -> list[str]:
    """One table row per finished phase: its data, steps, LoRA rank, learning rate, sequence length, final loss."""
    rows = []
    for phase, folder in phases:
        final = checkpoints_dir / folder / "final"
        metrics, problem = _read_json(final / "phase_metrics.json")
        if metrics is None:
            if problem != "missing":
                rows.append(f"| {phase} | phase_metrics.json {problem} | | | | | |")
            continue
        config, _ = _read_json(final / "provenance.json")
        config = _get(config, "config") or {}
        script = config.get("script_args") or config.get("script") or {}
        training = config.get("training_args") or config.get("training") or {}
        loss = metrics.get("avg_loss_last_10", metrics.get("loss"))
        rows.append(f"| {phase} | {_cell(script.get('train_data_path'))} | {_cell(metrics.get('global_step'))} | "
                    f"{_cell(metrics.get('lora_r'))} | {_cell(training.get('learning_rate'))} | "
                    f"{_cell(metrics.get('max_seq_length', training.get('max_length')))} | {_cell(loss)} |")
    return rows


def eval_table(eval_dir: Path) -> list[str]:
    """``logs/eval/*.json`` (pipeline_lib.evaluation: {"stage", "metrics": {name: value}}) as one row per stage;
    files of another shape or unreadable are listed, not fatal."""
    stages: dict[str, dict[str, Any]] = {}
    notes = []
    for path in sorted(eval_dir.glob("*.json")) if eval_dir.is_dir() else []:
        data, problem = _read_json(path)
        metrics = _get(data, "metrics")
        if not isinstance(metrics, dict):
            notes.append(f"- `{path.name}`: {problem or 'no metrics object'}, not shown")
            continue
        stage = data.get("stage") if isinstance(data.get("stage"), str) else path.stem
        stages[stage] = {k: v for k, v in metrics.items() if v is None or isinstance(v, int | float | str)}
    if not stages:
        return notes
    names = sorted({name for values in stages.values() for name in values})
    lines = ["| stage | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {stage} | " + " | ".join(_cell(values.get(n)) for n in names) + " |"
              for stage, values in stages.items()]
    return lines + notes


def gate_lines(gates_file: Path) -> list[str]:
    gates, problem = _read_json(gates_file)
    if not isinstance(gates, dict):
        return [f"`{gates_file.name}`: {problem or 'not a JSON object'}"]
    lines = ["| gate | passed | values |", "|---|---|---|"]
    for name, values in gates.items():
        values = values if isinstance(values, dict) else {"value": values}
        rest = ", ".join(f"{k}={_cell(v)}" for k, v in values.items() if k != "passed")
        lines.append(f"| {name} | {_cell(values.get('passed'))} | {rest} |")
    return lines


def model_card(manifest: dict[str, Any], checkpoints_dir: Path, phases: list[tuple[str, str]],
               workdir: Path) -> str:
    """README.md of the HF export: base model, phases (data, settings), data rows, gate values, evaluation."""
    slug = Path(manifest.get("hf", {}).get("path", "export/hf")).parent.name
    source = manifest.get("source_adapter", {})
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-generation", "tags: [gpt-oss, harmony, tool-calling, "
        "coding-agent, lora-merged]", "---", "", f"# {slug}", "",
        f"GPT-OSS fine-tuned into a tool-calling coding agent: base model `{manifest.get('base_model')}` with the "
        f"`{source.get('phase')}` LoRA adapter (`{source.get('path')}`) merged in (bf16 safetensors). Prompts use the "
        "Harmony format (the tokenizer's chat template; `pipeline_lib.harmony` in the training repository).", "",
        "## Training phases", "",
        "| phase | data | steps | LoRA r | learning rate | max length | loss (avg last 10) |",
        "|---|---|---|---|---|---|---|", *phase_rows(checkpoints_dir, phases), ""]
    report, problem = _read_json(workdir / "data" / "coding_tui" / "prep_report.json")
    categories = _get(report, "categories")
    if isinstance(categories, dict):
        lines += ["## Data", "", "| split | rows | by source |", "|---|---|---|"]
        lines += [f"| {name} | {_cell(_get(info, 'rows'))} | {_cell(_get(info, 'by_source'))} |"
                  for name, info in categories.items()]
        lines.append("")
    else:
        lines += ["## Data", "", f"`data/coding_tui/prep_report.json`: {problem or 'no categories'}.", ""]
    lines += ["## Quality gates", "", *gate_lines(workdir / "logs" / "quality_gates.json"), ""]
    evaluation = eval_table(workdir / "logs" / "eval")
    lines += ["## Evaluation", "", *(evaluation or ["No evaluation results (`logs/eval/*.json`) yet."]), ""]
    gguf = manifest.get("gguf", {})
    files = gguf.get("files") or {}
    lines += ["## Files", "", f"- `hf/`: merged model, export checks passed: {manifest.get('hf', {}).get('passed')}",
              f"- `gguf_q4/`: GGUF {gguf.get('status')}" + (": " + ", ".join(
                  f"{q} ({'validated' if f.get('passed') else 'FAILED validation'})" for q, f in files.items())
                                                              if files else ""),
              ""]
    quant = pick_gguf(files)
    if quant:
        lines += ["## Use", "", "```bash", "ollama create coding-tui -f gguf_q4/Modelfile && ollama run coding-tui",
                  f"llama-cli -m gguf_q4/{slug.removesuffix('-export')}-{quant}.gguf --jinja "
                  "--chat-template-file hf/chat_template.jinja -cnv", "```", ""]
    return "\n".join(lines)


def modelfile(gguf_file: str, system: str | None = None) -> str:
    """An Ollama Modelfile for ``gguf_file`` (a name in the Modelfile's own folder) with the Harmony template."""
    if '"""' in OLLAMA_HARMONY_TEMPLATE or (system and '"""' in system):
        raise ValueError('a Modelfile block cannot contain """')
    lines = [f"FROM ./{gguf_file}", f'TEMPLATE """{OLLAMA_HARMONY_TEMPLATE}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in HARMONY_STOPS]
    lines += ["PARAMETER temperature 1.0", "PARAMETER top_p 1.0"]  # gpt-oss's recommended sampling
    return "\n".join(lines) + "\n"


def pick_gguf(files: dict[str, Any]) -> str | None:
    """The preferred quantization that passed validation (GGUF_PREFERENCE), else None."""
    for quant in GGUF_PREFERENCE:
        if (files.get(quant) or {}).get("passed") and not (files.get(quant) or {}).get("deleted_after_validation"):
            return quant
    return None
