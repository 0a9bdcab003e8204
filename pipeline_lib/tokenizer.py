"""The GPT-OSS Hugging Face tokenizer (o200k_harmony), rebuilt offline from the verified o200k_base vocabulary.

Equal to openai/gpt-oss-20b's ``tokenizer.json`` in what matters (measured, see tests/test_tokenizer.py):
the o200k pre-tokenizer regex, 200,019 BPE ids, the Harmony special tokens at 199998-200018, no BOS/EOS added by
the post-processor, and a model vocab of 201,088 rows (config.vocab_size > largest id). Building takes a few
seconds; the built ``tokenizer.json`` is cached under
``vocab.cache_dir()/tokenizer-v<TOKENIZER_CACHE_VERSION>-<first 12 hex of O200K_SHA256>`` and the saved tokenizer
folder that ``load_gpt_oss_tokenizer()`` loads under ``vocab.cache_dir()/tokenizer-saved``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipeline_lib.vocab import O200K_FILENAME, O200K_SHA256, cache_dir, ensure_o200k_vocab

# tiktoken_ext.openai_public.o200k_base's pat_str, the regex gpt-oss's tokenizer.json uses.
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# openai/gpt-oss-20b tokenizer.json added_tokens (ids 199998-200018). Harmony's own encoding names 200018
# "<|reserved_200018|>"; the released HF tokenizer calls it <|endofprompt|>, and we follow the released files.
SPECIAL_TOKENS: dict[int, str] = {
    199998: "<|startoftext|>",
    199999: "<|endoftext|>",
    200000: "<|reserved_200000|>",
    200001: "<|reserved_200001|>",
    200002: "<|return|>",
    200003: "<|constrain|>",
    200004: "<|reserved_200004|>",
    200005: "<|channel|>",
    200006: "<|start|>",
    200007: "<|end|>",
    200008: "<|message|>",
    200009: "<|reserved_200009|>",
    200010: "<|reserved_200010|>",
    200011: "<|reserved_200011|>",
    200012: "<|call|>",
    200013: "<|reserved_200013|>",
    200014: "<|reserved_200014|>",
    200015: "<|reserved_200015|>",
    200016: "<|reserved_200016|>",
    200017: "<|reserved_200017|>",
    200018: "<|endofprompt|>",
}
BOS_ID, PAD_ID, RETURN_ID, CALL_ID, END_ID = 199998, 199999, 200002, 200012, 200007
MODEL_VOCAB_SIZE = 201088  # config.vocab_size of gpt-oss-20b: embedding rows, padded past the last id (200018)
GENERATION_EOS_IDS = [200002, 199999, 200012]  # generation_config.json of gpt-oss-20b
TOKENIZER_CACHE_VERSION = "1"


def gpt_oss_chat_template() -> str:
    """gpt-oss chat template as shipped by the installed trl (use it, don't write one)."""
    import trl

    path = Path(trl.__file__).parent / "chat_templates" / "gptoss.jinja"
    return path.read_text()


def _build_tokenizer_json(vocab_file: Path) -> str:
    from tokenizers import AddedToken, Regex, decoders, pre_tokenizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(vocab_file=str(vocab_file), pattern=O200K_PATTERN)
    tok = converter.tokenizer()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(O200K_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = None  # gpt-oss adds no BOS/EOS
    base_size = tok.get_vocab_size()
    if base_size != min(SPECIAL_TOKENS):
        raise RuntimeError(f"o200k_base has {base_size} ids, expected {min(SPECIAL_TOKENS)}")
    tok.add_special_tokens(
        [AddedToken(SPECIAL_TOKENS[i], normalized=False, special=True) for i in sorted(SPECIAL_TOKENS)]
    )
    for token_id, text in SPECIAL_TOKENS.items():
        if tok.token_to_id(text) != token_id:
            raise RuntimeError(f"special token {text} got id {tok.token_to_id(text)}, expected {token_id}")
    return tok.to_str()


def save_gpt_oss_tokenizer(out_dir: str | os.PathLike, *, model_max_length: int = 131072) -> Path:
    """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json and chat_template.jinja to out_dir."""
    out = Path(out_dir)
    cached = _cached_tokenizer_dir()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached / "tokenizer.json", out / "tokenizer.json")
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": SPECIAL_TOKENS[BOS_ID],
        "eos_token": SPECIAL_TOKENS[RETURN_ID],
        "pad_token": SPECIAL_TOKENS[PAD_ID],
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "o200k_base_sha256": O200K_SHA256,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special_map = {"bos_token": SPECIAL_TOKENS[BOS_ID], "eos_token": SPECIAL_TOKENS[RETURN_ID],
                   "pad_token": SPECIAL_TOKENS[PAD_ID]}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
    (out / "chat_template.jinja").write_text(gpt_oss_chat_template())
    return out


def _cached_tokenizer_dir() -> Path:
    folder = cache_dir() / f"tokenizer-v{TOKENIZER_CACHE_VERSION}-{O200K_SHA256[:12]}"
    if not (folder / "tokenizer.json").is_file():
        vocab_dir = ensure_o200k_vocab()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"tokenizer.json.tmp{os.getpid()}"
        tmp.write_text(_build_tokenizer_json(vocab_dir / O200K_FILENAME))
        os.replace(tmp, folder / "tokenizer.json")
    return folder


def load_gpt_oss_tokenizer(path: str | os.PathLike | None = None):
    """Load a tokenizer from ``path`` (a model folder) or, when None, the offline-built gpt-oss tokenizer."""
    from transformers import AutoTokenizer

    if path is None:
        path = cache_dir() / "tokenizer-saved"
        if not (Path(path) / "tokenizer_config.json").is_file():
            save_gpt_oss_tokenizer(path)
    return AutoTokenizer.from_pretrained(str(path))
