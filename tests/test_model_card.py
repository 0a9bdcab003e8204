"""The export's model card and Ollama Modelfile: written, well-formed, and the template renders Harmony.

No Go and no Ollama here: the Modelfile's template is checked for Go text/template block structure and the fields
Ollama provides, and rendered by a small evaluator of the subset it uses (trim markers, if / else if / else, range,
eq, or, json, field paths) against pipeline_lib.harmony's rendering of the same conversations.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline_lib import model_card
from pipeline_lib.harmony import encode_harmony_prompt

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
OLLAMA_FIELDS = {".System", ".Tools", ".Messages", ".Role", ".Content", ".Thinking", ".ToolCalls", ".ToolName",
                 ".Function.Name", ".Function.Description", ".Function.Parameters", ".Function.Arguments"}


def go_tokens(template: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", expr)] with Go's trim markers applied ({{- trims before, -}} after)."""
    out: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for match in ACTION.finditer(template):
        text = template[pos:match.start()]
        text = text.lstrip(" \t\r\n") if trim_next else text
        out.append(("text", text.rstrip(" \t\r\n") if match.group(1) else text))
        out.append(("action", match.group(2)))
        pos, trim_next = match.end(), bool(match.group(3))
    tail = template[pos:]
    out.append(("text", tail.lstrip(" \t\r\n") if trim_next else tail))
    assert all("{{" not in t and "}}" not in t for kind, t in out if kind == "text"), "stray {{ or }}"
    return out


def go_parse(tokens: list[tuple[str, str]]) -> list[Any]:
    """Nested nodes: ("text", s), ("expr", e), ("if", [(cond, body), ...], else_body), ("range", e, body)."""
    stack: list[tuple[Any, list[Any]]] = [("root", [])]
    for kind, value in tokens:
        body = stack[-1][1]
        if kind == "text":
            body.append(("text", value))
        elif value.startswith("if "):
            node = ["if", [[value[3:], []]], None]
            body.append(node)
            stack.append((node, node[1][0][1]))
        elif value.startswith("range "):
            node = ["range", value[6:], []]
            body.append(node)
            stack.append((node, node[2]))
        elif value.startswith("else if "):
            node = stack.pop()[0]
            assert node[0] == "if" and node[2] is None, "else if outside if"
            node[1].append([value[8:], []])
            stack.append((node, node[1][-1][1]))
        elif value == "else":
            node = stack.pop()[0]
            assert node[0] == "if" and node[2] is None, "else outside if"
            node[2] = []
            stack.append((node, node[2]))
        elif value == "end":
            assert len(stack) > 1, "end without a block"
            stack.pop()
        else:
            body.append(("expr", value))
    assert len(stack) == 1, "unclosed block"
    return stack[0][1]


def go_eval(expr: str, dot: Any, root: dict[str, Any]) -> Any:
    words = re.findall(r'"[^"]*"|\S+', expr)
    if len(words) > 1:
        fn, args = words[0], [go_eval(w, dot, root) for w in words[1:]]
        if fn == "eq":
            return args[0] in args[1:]
        if fn == "or":
            return next((a for a in args if a), args[-1])
        if fn == "json":
            return json.dumps(args[0], separators=(",", ":"))  # Go's json.Marshal: compact
        raise AssertionError(f"function {fn} is not in the subset")
    word = words[0]
    if word.startswith('"'):
        return word[1:-1]
    assert word.startswith("."), word
    value = dot
    for key in word[1:].split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def go_render(nodes: list[Any], dot: Any, root: dict[str, Any]) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "expr":
            value = go_eval(node[1], dot, root)
            out.append("" if value is None else str(value))
        elif node[0] == "if":
            chosen = next((body for cond, body in node[1] if go_eval(cond, dot, root)), node[2] or [])
            out.append(go_render(chosen, dot, root))
        else:
            out.extend(go_render(node[2], item, root) for item in go_eval(node[1], dot, root) or [])
    return "".join(out)


def render(template: str, values: dict[str, Any]) -> str:
    return go_render(go_parse(go_tokens(template)), values, values)


TOOLS = [{"name": "run", "description": "Run a shell command.", "parameters": {
    "type": "object", "properties": {"cmd": {"type": "string", "description": "the command"}}, "required": ["cmd"]}}]


def ollama_values(messages: list[dict[str, Any]], system: str = "", tools: list[dict] | None = None) -> dict:
    """What Ollama hands the template for a chat request (template.Values; api.Message / api.Tool field names)."""
    converted = []
    for m in messages:
        entry = {"Role": m["role"], "Content": m.get("content", ""), "Thinking": m.get("thinking", "")}
        if m.get("tool_calls"):
            entry["ToolCalls"] = [{"Function": {"Name": c["name"], "Arguments": c["arguments"]}}
                                  for c in m["tool_calls"]]
        if m["role"] == "tool":
            entry["ToolName"] = m["name"]
        converted.append(entry)
    return {"System": system, "Messages": converted, "Tools": [
        {"Function": {"Name": t["name"], "Description": t["description"], "Parameters": t["parameters"]}}
        for t in tools or []]}


def test_template_structure_and_fields():
    tokens = go_tokens(model_card.OLLAMA_HARMONY_TEMPLATE)
    go_parse(tokens)  # balanced if / range / end
    fields = {f for kind, expr in tokens if kind == "action" for f in re.findall(r"\.[A-Z][\w.]*", expr)}
    assert fields <= OLLAMA_FIELDS, fields - OLLAMA_FIELDS
    with pytest.raises(AssertionError, match="unclosed block"):  # control: the checker sees a missing end
        go_parse(go_tokens(model_card.OLLAMA_HARMONY_TEMPLATE.replace("{{- end }}<|start|>assistant",
                                                                      "<|start|>assistant")))


def test_template_renders_what_openai_harmony_renders():
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello.", "thinking": "greet"},
            {"role": "user", "content": "bye"}]
    assert render(model_card.OLLAMA_HARMONY_TEMPLATE, ollama_values(chat)) == encode_harmony_prompt(chat)
    with_system = render(model_card.OLLAMA_HARMONY_TEMPLATE, ollama_values(chat, system="Be brief."))
    assert with_system == encode_harmony_prompt(chat, developer_instructions="Be brief.")

    agent = [{"role": "user", "content": "Run ls"},
             {"role": "assistant", "content": "", "thinking": "list files",
              "tool_calls": [{"name": "run", "arguments": {"cmd": "ls"}}]},
             {"role": "tool", "name": "run", "content": "a.py"}]
    expected = encode_harmony_prompt(agent, developer_instructions="Be brief.", tools=TOOLS)
    # The two documented deviations: the schema as JSON instead of TypeScript, Go's compact argument JSON.
    typescript = "type run = (_: {\n// the command\ncmd: string,\n}) => any;"
    assert typescript in expected and '{"cmd": "ls"}' in expected
    schema = json.dumps(TOOLS[0]["parameters"], separators=(",", ":"))
    expected = expected.replace(typescript, f"type run = (_: {schema}) => any;")
    expected = expected.replace('{"cmd": "ls"}', '{"cmd":"ls"}')
    rendered = render(model_card.OLLAMA_HARMONY_TEMPLATE, ollama_values(agent, "Be brief.", TOOLS))
    assert rendered == expected
    # Control: a template that forgets the message end token does not render Harmony.
    broken = model_card.OLLAMA_HARMONY_TEMPLATE.replace("{{ .Content }}<|end|>\n{{- else if", "{{ .Content }}\n"
                                                        "{{- else if")
    assert render(broken, ollama_values(chat)) != encode_harmony_prompt(chat)


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs; an argument may be a \"\"\"...\"\"\" block over several lines."""
    out, rest = [], text
    while rest.strip():
        match = re.match(r'\s*([A-Z]+) ("""(.*?)"""|[^\n]*)\n?', rest, re.S)
        assert match, f"not a Modelfile instruction: {rest[:80]!r}"
        out.append((match.group(1), match.group(3) if match.group(3) is not None else match.group(2)))
        rest = rest[match.end():]
    return out


def test_modelfile_is_well_formed():
    from pipeline_lib.formatters import CODING_AGENT_DEV_PROMPT

    entries = parse_modelfile(model_card.modelfile("m-Q4_K_M.gguf", system=CODING_AGENT_DEV_PROMPT))
    names = [name for name, _ in entries]
    assert names[0] == "FROM" and entries[0][1] == "./m-Q4_K_M.gguf"
    assert set(names) <= {"FROM", "TEMPLATE", "SYSTEM", "PARAMETER"} and names.count("TEMPLATE") == 1
    assert dict(entries)["TEMPLATE"] == model_card.OLLAMA_HARMONY_TEMPLATE
    assert dict(entries)["SYSTEM"] == CODING_AGENT_DEV_PROMPT
    stops = [arg for name, arg in entries if name == "PARAMETER" and arg.startswith("stop ")]
    assert stops == ['stop "<|return|>"', 'stop "<|call|>"']
    assert model_card.pick_gguf({"Q4_K_M": {"passed": False}, "MXFP4_MOE": {"passed": True}}) == "MXFP4_MOE"
    assert model_card.pick_gguf({"BF16": {"passed": True, "deleted_after_validation": True}}) is None


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    final = work / "checkpoints" / "tool_calling_sft" / "final"
    final.mkdir(parents=True)
    (final / "phase_metrics.json").write_text(json.dumps({"global_step": 40, "lora_r": 64, "avg_loss_last_10": 1.25,
                                                          "max_seq_length": 8192}))
    (final / "provenance.json").write_text(json.dumps({"config": {
        "script_args": {"train_data_path": "data/coding_tui/tool_calling/train"},
        "training_args": {"learning_rate": 0.0002}}}))
    broken = work / "checkpoints" / "agent_sft" / "final"
    broken.mkdir(parents=True)
    (broken / "phase_metrics.json").write_text("{truncated")
    (work / "logs").mkdir()
    (work / "logs" / "quality_gates.json").write_text(json.dumps({"tool_calling": {"loss": "1.25", "passed": "true"}}))
    return work


def test_model_card_lists_phases_gates_and_evaluation_read_defensively(tmp_path):
    work = _workdir(tmp_path)
    manifest = {"hf": {"path": str(work / "checkpoints" / "m-coding-tui-export" / "hf"), "passed": True},
                "base_model": "openai/gpt-oss-20b", "source_adapter": {"phase": "ipo", "path": "x"},
                "gguf": {"status": "ok", "files": {"Q4_K_M": {"passed": True}}}}
    phases = [("tool_calling_sft", "tool_calling_sft"), ("agent_sft", "agent_sft"), ("ipo", "agent_sft_ipo")]
    card = model_card.model_card(manifest, work / "checkpoints", phases, work)
    assert "| tool_calling_sft | data/coding_tui/tool_calling/train | 40 | 64 | 0.0002 | 8192 | 1.25 |" in card
    assert "| agent_sft | phase_metrics.json unreadable (JSONDecodeError) |" in card  # said, not raised
    assert "| tool_calling | true | loss=1.25 |" in card and "`openai/gpt-oss-20b`" in card
    assert "No evaluation results" in card and "prep_report.json`: missing" in card
    assert "llama-cli -m gguf_q4/m-coding-tui-Q4_K_M.gguf --jinja" in card

    eval_dir = work / "logs" / "eval"
    eval_dir.mkdir()
    (eval_dir / "base.json").write_text(json.dumps({"stage": "base", "metrics": {"pass_at_1": 0.25,
                                                                                 "tool_call_accuracy": None}}))
    (eval_dir / "ipo.json").write_text(json.dumps({"stage": "ipo", "metrics": {"pass_at_1": 0.5}}))
    (eval_dir / "odd.json").write_text("[1, 2]")
    (eval_dir / "cut.json").write_text('{"stage": "x", "metr')
    card = model_card.model_card(manifest, work / "checkpoints", phases, work)
    assert "| stage | pass_at_1 | tool_call_accuracy |" in card
    assert "| base | 0.25 | — |" in card and "| ipo | 0.5 | — |" in card
    assert "`odd.json`: no metrics object, not shown" in card and "`cut.json`: unreadable (JSONDecodeError)" in card
