"""Hand-written Harmony conversations and tiny on-disk datasets for the SFT, packing and LoRA tests.

Written literally (not through pipeline_lib.harmony) so the mask tests check the token rule against text whose
structure is visible here. Layout follows openai_harmony / reference harmony-vectors.
"""

from __future__ import annotations

from pathlib import Path

SYSTEM = ("<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
          "Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
          "Channel must be included for every message.<|end|>")
TOOLS = ("<|start|>developer<|message|># Instructions\n\nYou are a coding agent.\n\n# Tools\n\n## functions\n\n"
         "namespace functions {\n\n// Run a shell command.\ntype run = (_: {\ncmd: string,\n}) => any;\n\n"
         "} // namespace functions<|end|>")


def tool_conversation(i: int) -> str:
    """System, developer+tools, user, analysis, tool call, tool result, final answer (ends with <|return|>)."""
    return (
        f"{SYSTEM}{TOOLS}"
        f"<|start|>user<|message|>Run test number {i} and tell me if it passes.<|end|>"
        f"<|start|>assistant<|channel|>analysis<|message|>I should run test {i} with cargo.<|end|>"
        f"<|start|>assistant to=functions.run<|channel|>commentary <|constrain|>json<|message|>"
        f'{{"cmd": "cargo test t{i}"}}<|call|>'
        f"<|start|>functions.run to=assistant<|channel|>commentary<|message|>test t{i} ... ok<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>Test {i} passes.<|return|>"
    )


def chat_conversation(i: int, words: int = 6) -> str:
    """A plain exchange with a final answer of ``words`` words (vary it to get different lengths)."""
    answer = " ".join(f"w{i}x{j}" for j in range(words))
    return (f"{SYSTEM}<|start|>user<|message|>Say {words} words, round {i}.<|end|>"
            f"<|start|>assistant<|channel|>final<|message|>{answer}<|return|>")


def mixed_texts(n: int) -> list[str]:
    return [tool_conversation(i) if i % 2 == 0 else chat_conversation(i, words=3 + i % 7) for i in range(n)]


def write_text_dataset(folder: Path, texts: list[str]) -> Path:
    from datasets import Dataset

    Dataset.from_dict({"text": texts, "source": ["fixture"] * len(texts)}).save_to_disk(str(folder))
    return folder
