"""Phase 5: pick the best adapter, merge it into the right base (HF safetensors), and export GGUF for llama.cpp.

GGUF path: llama.cpp's own ``convert_hf_to_gguf.py`` writes a BF16 GGUF, then
``llama_cpp.llama_model_quantize`` (the pinned llama-cpp-python's bindings, no CLI needed) makes Q4_K_M (ftype 15)
and MXFP4_MOE (ftype 38, gpt-oss's native 4-bit: on the real 20B "Q4_K_M" falls back to Q5_0/Q8_0 because
2880 % 256 != 0). The converter comes from a user's llama.cpp checkout (``--llama-cpp-dir``) or from the
llama-cpp-python 0.3.36 sdist (its wheel has no converter; PyPI's ``gguf`` wheel has none either), extracted once
into the cache. Every GGUF is validated: metadata read back with the converter's gguf-py, and llama.cpp logits vs
the HF model's on short Harmony probes. A GGUF failure leaves the HF export standing (writeup Phase 5): the
manifest says so and the caller warns.

llama.cpp runs in child processes (``python -m pipeline_lib.gguf_export quantize|logits``): a GGML_ASSERT aborts
the whole process, which must not take the finished HF export and its manifest down with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_lib import phases
from pipeline_lib.merge import MergeSettings, check, merge_adapter
from pipeline_lib.probes import harmony_probe_ids, logits_agreement, probe_logits
from pipeline_lib.provenance import REPO_ROOT, git_sha, provenance, write_json_atomic
from pipeline_lib.vocab import sha256_of

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
# sha256 of llama_cpp_python-0.3.36.tar.gz as served by PyPI (checked 2026-11); its vendor/llama.cpp is 0c1e57098.
LLAMA_CPP_PYTHON_SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SDIST_ENV = "LLAMA_CPP_PYTHON_SDIST"  # path to an already downloaded sdist (offline machines, CI caches)
QUANT_FTYPES = {"Q4_K_M": 15, "MXFP4_MOE": 38, "Q8_0": 7}  # llama.h enum llama_ftype
PROBE_PREFIX = ".probe-"  # <gguf folder>/.probe-<pid>: llama.cpp logits requests (llama_logits)

# Adapter priority for the export (writeup Phase 5): the latest trained phase that finished wins, as
# (phase name, run folder under checkpoints/), from pipeline_lib.phases. A phase counts only when its final/ holds a
# finished adapter (checkpoints.final_adapter_problem: a crashed run leaves checkpoint-N/ and maybe a partial final/).
ADAPTER_PRIORITY: list[tuple[str, str]] = [(p.name, p.folder) for p in phases.ADAPTER_PRIORITY]


@dataclass
class GgufSettings:
    """The GGUF half of the export: which files, where the converter comes from, and the validation thresholds.
    Each field is a ``19_merge_adapter.py`` flag and a configs/merge.yaml key (the YAML repeats them with reasons)."""

    quant: str = field(default="Q4_K_M,MXFP4_MOE", metadata={"help": f"Comma list of {sorted(QUANT_FTYPES)}"})
    keep_bf16_gguf: bool = field(default=False, metadata={
        "help": "Keep the BF16 GGUF (the tight reference; ~39 GB on the 20B, so dropped unless asked)"})
    threads: int = field(default=0, metadata={"help": "llama.cpp threads (0: all cores)"})
    llama_cpp_dir: str | None = field(default=None, metadata={
        "help": "A llama.cpp checkout whose converter to use (default: the pinned llama-cpp-python sdist)"})
    llama_cpp_sdist: str | None = field(default=None, metadata={
        "help": "Path to llama_cpp_python-0.3.36.tar.gz (offline; else pip downloads it once)"})
    # BF16 GGUF vs HF logits, rel_median (pipeline_lib.probes.logits_agreement: per-position max|d| / std(HF), the
    # median over the probe positions). At the real width (2-layer GPT-OSS-20B shape, random weights, 2026-11-29,
    # docs/BENCHMARKS.md "BF16 GGUF controls") a correct file measured median 0.035-0.037 in three runs (fp32 CPU
    # reference twice, probes.float32_forward on the H200) -- what llama.cpp's BF16 dot products (activations rounded
    # to bf16) cost there -- while its p90 swung from 0.043 to 0.27 with the number of positions whose top-4 routing
    # flipped (the p90 was judged until then and failed that correct file). Mapping bugs move every position: at the
    # real width sinks zeroed median 0.98, gate/up swapped 3.06, router bias zeroed 0.20; on the tiny model (correct
    # 0.014-0.018) 0.13-0.21, 3.19 and 0.23. 0.05 sits 1.4x above the correct real-width file and 4x below the
    # nearest control. A missing sliding window (tiny: max 0.109) and plain RoPE (0.046) are caught by the metadata
    # checks; the real model's 128-token window is longer than the probes.
    gguf_bf16_rel_tol: float = field(default=5e-2, metadata={"help": "BF16 GGUF vs HF logits: max rel_median"})
    # ... raised to this factor x the model's own rounding sensitivity: the rel_median between the same saved weights
    # computed in bf16 and in fp32 (hf_reference_logits; 0 where the loaders compute in fp32, the CPU). llama.cpp
    # rounds fewer values than a torch bf16 forward (activations at its matmul inputs only; fp32 residual and
    # accumulation), and measured about half of it on the 2-layer real shape, H200 2026-11-29 (docs/BENCHMARKS.md
    # "BF16 GGUF of a trained export"): untrained 0.037 vs 0.082, tool-calling-trained 0.0385 vs 0.079 (and the tiny
    # model trained through the whole curriculum on the CPU: 0.011 vs 0.025). A random-weight model trained
    # through the whole curriculum measured 0.170 (its merge==adapter check also read 0.67 there, 0.04 at the merge):
    # near-tied routing makes some models far more sensitive to any rounding, and the sensitivity says by how much.
    # Mapping bugs stay far out: sinks zeroed 0.98 and gate/up swapped 3.06 at the real width; router bias zeroed
    # 0.20 where the untrained model's sensitivity is ~0.08.
    gguf_bf16_sensitivity_factor: float = field(default=1.0, metadata={
        "help": "BF16 GGUF: the rel_median tolerance is max(gguf_bf16_rel_tol, this x the bf16-vs-fp32 rel_median)"})
    # A floor against a garbage file, not the tight check: a correct real-width file on random weights (near-tied
    # logits) measured top-1 0.908-0.966, the router-bias control 0.862 (the median above catches it).
    gguf_bf16_min_argmax_agreement: float = field(default=0.8, metadata={"help": "BF16 GGUF: min top-1 agreement"})
    # 4-bit files: rel is 2.2-2.7 on the tiny model (0.095-0.125 on its probe), correlation 0.986-0.993 and
    # top-1 0.68-0.76, close to the sinks-zeroed BF16 control (0.994, 0.85): on their own they cannot tell a mapping
    # bug from quantization noise. They are sanity floors against a garbage file; the tight check is the BF16 one
    # above, run on the file the quants are made from.
    gguf_quant_min_correlation: float = field(default=0.95, metadata={"help": "4-bit GGUF: min logits correlation"})
    gguf_quant_min_argmax_agreement: float = field(default=0.5, metadata={"help": "4-bit GGUF: min top-1 agreement"})

    def __post_init__(self) -> None:
        unknown = [q for q in self.quants if q not in QUANT_FTYPES]
        if unknown:
            raise ValueError(f"--quant {self.quant}: unknown {unknown}; choose from {sorted(QUANT_FTYPES)}")
        if self.llama_cpp_dir and not (Path(self.llama_cpp_dir) / "convert_hf_to_gguf.py").is_file():
            raise ValueError(f"--llama-cpp-dir {self.llama_cpp_dir}: no convert_hf_to_gguf.py in it")

    @property
    def quants(self) -> list[str]:
        return [q.strip() for q in self.quant.split(",") if q.strip()]

    @property
    def n_threads(self) -> int:
        return self.threads or os.cpu_count() or 2

    def thresholds(self) -> dict[str, float]:
        return {k: v for k, v in vars(self).items() if k.startswith("gguf_")}


@dataclass(frozen=True)
class LlamaCppTools:
    convert_script: Path
    gguf_py: Path
    commit: str
    source: str


class GgufUnavailable(RuntimeError):
    """The converter could not be found or fetched; the message says what to pass instead."""


# ---------------------------------------------------------------- adapter and base choice


def find_best_adapter(checkpoints_dir: str | os.PathLike) -> tuple[str, Path] | None:
    """(phase, final/ folder) of the highest-priority finished adapter, or None."""
    from pipeline_lib.checkpoints import final_adapter_problem

    for phase, folder in ADAPTER_PRIORITY:
        final = Path(checkpoints_dir) / folder / "final"
        if final_adapter_problem(final) is None:
            return phase, final
    return None


def choose_export_base(phase: str, model: str, merged_model: str | os.PathLike) -> str:
    """Phase 2+ adapters were trained on the merged tool-calling model; a tool-calling adapter on the raw model."""
    if not phases.get(phase).on_merged_model:
        return str(model)
    if not (Path(merged_model) / "config.json").is_file():
        raise FileNotFoundError(f"--merged_model {merged_model}: no config.json; a {phase} adapter needs the merged "
                                f"tool-calling model as its base (run Phase 1.5 first)")
    return str(merged_model)


# ---------------------------------------------------------------- the converter


def tools_from_checkout(llama_cpp_dir: str | os.PathLike) -> LlamaCppTools:
    root = Path(llama_cpp_dir)
    script, gguf_py = root / "convert_hf_to_gguf.py", root / "gguf-py"
    if not script.is_file() or not (gguf_py / "gguf").is_dir():
        raise GgufUnavailable(f"--llama-cpp-dir {root}: expected convert_hf_to_gguf.py and gguf-py/ in it")
    return LlamaCppTools(script, gguf_py, git_sha(root) or "unknown", f"checkout {root}")


def download_sdist(dest: Path) -> Path:
    """pip download the pinned sdist (76 MB, ~30 s with its metadata step); pip verifies it against PyPI."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", str(dest),
           f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"))
    if result.returncode != 0 or not found:
        raise GgufUnavailable(
            f"could not download llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}'s sdist (offline?): pass "
            f"--llama-cpp-dir DIR (a llama.cpp checkout) or set {SDIST_ENV}=/path/to/llama_cpp_python-"
            f"{LLAMA_CPP_PYTHON_VERSION}.tar.gz. pip said: {result.stderr.strip()[-500:]}")
    return found[0]


def own_temp_dir(parent: Path, prefix: str) -> Path:
    """``parent/<prefix><pid>``, empty, after removing the ones dead processes left (a run killed mid-export)."""
    remove_stale_temp_dirs(parent, prefix)
    folder = parent / f"{prefix}{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)  # a dead process that had this pid
    folder.mkdir(parents=True)
    return folder


def remove_stale_temp_dirs(parent: Path, prefix: str) -> list[Path]:
    """Remove ``parent/<prefix><pid>`` folders whose process is gone; a live process keeps its own. Returns them."""
    removed = []
    for folder in Path(parent).glob(f"{prefix}*"):
        pid = folder.name[len(prefix):]
        if not (folder.is_dir() and pid.isdigit()) or _process_alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def extract_converter(sdist: Path, dest: Path) -> LlamaCppTools:
    """Unpack convert_hf_to_gguf.py, conversion/ and gguf-py/ (~2 MB of the 76 MB sdist) and the submodule commit."""
    actual = sha256_of(sdist)
    if actual != LLAMA_CPP_PYTHON_SDIST_SHA256:
        raise GgufUnavailable(f"{sdist}: sha256 {actual} is not llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}'s "
                              f"sdist ({LLAMA_CPP_PYTHON_SDIST_SHA256})")
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/"
    vendor = prefix + "vendor/llama.cpp/"
    head = prefix + ".git/modules/vendor/llama.cpp/HEAD"
    wanted = (vendor + "convert_hf_to_gguf.py", vendor + "conversion/", vendor + "gguf-py/")
    tmp = own_temp_dir(dest.parent, ".extract-")
    commit = "unknown"
    with tarfile.open(sdist) as tar:
        for member in tar:
            if member.name == head:
                commit = tar.extractfile(member).read().decode().strip()
            elif member.isfile() and member.name.startswith(wanted):
                target = tmp / member.name[len(vendor):]
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    (tmp / "LLAMA_CPP_COMMIT").write_text(commit + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return tools_from_extracted(dest)


def tools_from_extracted(folder: Path) -> LlamaCppTools:
    commit = (folder / "LLAMA_CPP_COMMIT").read_text().strip()
    return LlamaCppTools(folder / "convert_hf_to_gguf.py", folder / "gguf-py", commit,
                         f"llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} sdist")


def resolve_llama_cpp(llama_cpp_dir: str | os.PathLike | None = None, sdist: str | os.PathLike | None = None,
                      cache: Path | None = None) -> LlamaCppTools:
    """A user checkout if given; else the converter unpacked from the pinned sdist (cached; downloaded once)."""
    if llama_cpp_dir:
        return tools_from_checkout(llama_cpp_dir)
    from pipeline_lib.vocab import cache_dir

    cache = cache or cache_dir() / f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}"
    extracted = cache / "llama.cpp"
    if (extracted / "LLAMA_CPP_COMMIT").is_file() and (extracted / "convert_hf_to_gguf.py").is_file():
        return tools_from_extracted(extracted)
    sdist = sdist or os.environ.get(SDIST_ENV)
    if sdist and not Path(sdist).is_file():
        raise GgufUnavailable(f"{SDIST_ENV}/--llama-cpp-sdist {sdist}: no such file")
    sdist_path = Path(sdist) if sdist else download_sdist(cache / "sdist")
    cache.mkdir(parents=True, exist_ok=True)
    return extract_converter(sdist_path, extracted)


def _child_env(tools: LlamaCppTools | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO_ROOT)] + ([str(tools.gguf_py)] if tools else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def convert_to_gguf(hf_dir: Path, out_file: Path, tools: LlamaCppTools, outtype: str = "bf16") -> Path:
    """llama.cpp's converter in a child process, with its own gguf-py first on PYTHONPATH."""
    cmd = [sys.executable, str(tools.convert_script), str(hf_dir), "--outfile", str(out_file), "--outtype", outtype]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(tools))
    if result.returncode != 0 or not out_file.is_file():
        raise RuntimeError(f"convert_hf_to_gguf.py failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return out_file


def quantize_gguf(src: Path, dst: Path, quant: str, n_threads: int) -> Path:
    cmd = [sys.executable, "-m", "pipeline_lib.gguf_export", "quantize", str(src), str(dst), quant,
           "--threads", str(n_threads)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
    if result.returncode != 0 or not dst.is_file():
        raise RuntimeError(f"quantize {quant} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return dst


def llama_logits(gguf_file: Path, probes: list[list[int]], texts: list[str], n_threads: int) -> dict[str, Any]:
    """Logits of every probe position from llama.cpp, its own tokenization of each probe's text, and the metadata
    its loader read (all values as strings).

    The request and logits go through ``<gguf folder>/.probe-<pid>`` (not the system temp folder, where a killed run
    left them for good): removed when done, and by the next export when this process was killed."""
    import numpy as np

    tmp = own_temp_dir(gguf_file.parent, PROBE_PREFIX)
    try:
        request, logits_file = tmp / "probes.json", tmp / "logits.npy"
        request.write_text(json.dumps({"probes": probes, "texts": texts}))
        cmd = [sys.executable, "-m", "pipeline_lib.gguf_export", "logits", str(gguf_file), str(request),
               str(logits_file), "--threads", str(n_threads)]
        result = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())
        if result.returncode != 0 or not logits_file.is_file():
            raise RuntimeError(f"llama.cpp logits failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        tokenized = json.loads(request.with_suffix(".tokens.json").read_text())
        return {"logits": np.load(logits_file), "tokenized": tokenized["tokens"], "metadata": tokenized["metadata"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- validation


def read_gguf_metadata(gguf_file: Path, tools: LlamaCppTools) -> dict[str, Any]:
    """Metadata via the converter's own gguf-py reader (the reader that matches its writer). It parses the 201K-entry
    token arrays in Python (~6 s idle, ~25 s on a busy 2-core box), so only the converter's BF16 output is read
    this way; the quantized files' metadata comes from llama.cpp's loader (``llama_logits``)."""
    if str(tools.gguf_py) not in sys.path:
        sys.path.insert(0, str(tools.gguf_py))
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_file))
    meta: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key not in ("tokenizer.ggml.pre", "tokenizer.ggml.model"):
            continue  # 201K-entry arrays
        try:
            meta[key] = fld.contents()
        except Exception:
            continue
    return meta


def summarize_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """What goes into the manifest: scalars and short strings (not the chat template or token arrays)."""
    return {k: v for k, v in meta.items() if not k.startswith("tokenizer.ggml.") or k == "tokenizer.ggml.pre"
            if isinstance(v, int | float) or (isinstance(v, str) and len(v) <= 200)}


def _same(got: Any, want: Any) -> bool:
    """Equality across readers: gguf-py returns typed values, llama.cpp's loader returns strings."""
    if got is None or want is None:
        return got == want
    if isinstance(want, int | float) and not isinstance(want, bool):
        try:
            return abs(float(got) - float(want)) <= 1e-6 * max(1.0, abs(float(want)))
        except (TypeError, ValueError):
            return False
    return str(got) == str(want)


def metadata_checks(meta: dict[str, Any], config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The GGUF must describe the same model as config.json: a wrong arch, pre-tokenizer, expert count or rope
    loads and runs but misbehaves (plain RoPE instead of YaRN was rel 0.046, caught here instead)."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    arch = "gpt-oss"
    expected = {
        "general.architecture": arch,
        "tokenizer.ggml.pre": "gpt-4o",  # the gpt-oss tokenizer hashes to the gpt-4o pre-tokenizer
        f"{arch}.block_count": config["num_hidden_layers"],
        f"{arch}.expert_count": config["num_local_experts"],
        f"{arch}.expert_used_count": config["num_experts_per_tok"],
        f"{arch}.attention.sliding_window": config["sliding_window"],
        f"{arch}.rope.freq_base": rope.get("rope_theta", config.get("rope_theta")),
        f"{arch}.rope.scaling.type": rope.get("rope_type") or rope.get("type"),
        f"{arch}.rope.scaling.factor": rope.get("factor"),
        f"{arch}.rope.scaling.original_context_length": rope.get("original_max_position_embeddings"),
    }
    return {key: check(meta.get(key), want, _same(meta.get(key), want)) for key, want in expected.items()}


def logits_checks(agreement: dict[str, float], quantized: bool, settings: GgufSettings,
                  sensitivity: float | None = None) -> dict[str, dict[str, Any]]:
    """``sensitivity``: the HF model's bf16-vs-fp32 rel_median on the probes (None: not measured, fp32 loaders)."""
    if not quantized:
        parts = {"rel_tol": settings.gguf_bf16_rel_tol,
                 "sensitivity_term": settings.gguf_bf16_sensitivity_factor * (sensitivity or 0.0)}
        tolerance = max(parts.values())
        return {
            "logits_rel_median": check(agreement["rel_median"], tolerance, agreement["rel_median"] <= tolerance,
                                       tolerance_parts=parts, rounding_sensitivity=sensitivity),
            "logits_argmax_agreement": check(agreement["argmax_agreement"], settings.gguf_bf16_min_argmax_agreement,
                                             agreement["argmax_agreement"] >= settings.gguf_bf16_min_argmax_agreement),
        }
    return {
        "logits_correlation": check(agreement["correlation"], settings.gguf_quant_min_correlation,
                                    agreement["correlation"] >= settings.gguf_quant_min_correlation),
        "logits_argmax_agreement": check(agreement["argmax_agreement"], settings.gguf_quant_min_argmax_agreement,
                                         agreement["argmax_agreement"] >= settings.gguf_quant_min_argmax_agreement),
    }


def validate_gguf(gguf_file: Path, hf_reference: dict[str, Any], config: dict[str, Any], tools: LlamaCppTools,
                  settings: GgufSettings, *, quantized: bool) -> dict[str, Any]:
    """Metadata + llama.cpp-vs-HF logits for one GGUF; every check has value, threshold, passed."""
    size = gguf_file.stat().st_size
    result: dict[str, Any] = {"path": str(gguf_file), "size_bytes": size, "size_gib": round(size / 2**30, 3)}
    try:
        llama = llama_logits(gguf_file, hf_reference["probes"], hf_reference["texts"], settings.n_threads)
        meta = llama["metadata"] if quantized else read_gguf_metadata(gguf_file, tools)
        result["metadata_reader"] = "llama.cpp loader" if quantized else "gguf-py GGUFReader"
        result["metadata"] = summarize_metadata(meta)
        checks = metadata_checks(meta, config)
        n_vocab, hf_vocab = llama["logits"].shape[-1], hf_reference["logits"].shape[-1]
        checks["n_vocab"] = check(int(n_vocab), int(hf_vocab), n_vocab == hf_vocab)
        same_tokens = llama["tokenized"] == hf_reference["probes"]
        checks["tokenizer_matches_hf"] = check(same_tokens, True, same_tokens)
        width = min(n_vocab, hf_vocab)
        agreement = logits_agreement(hf_reference["logits"][:, :width], llama["logits"][:, :width])
        result["logits"] = agreement
        checks.update(logits_checks(agreement, quantized, settings,
                                    (hf_reference.get("rounding_sensitivity") or {}).get("rel_median")))
    except Exception as exc:
        checks = {"validation_ran": check(False, True, False, error=f"{type(exc).__name__}: {exc}"[:2000])}
    result["checks"] = checks
    result["passed"] = all(entry["passed"] for entry in checks.values())
    return result


def hf_reference_logits(hf_dir: Path, precision: Any = None) -> dict[str, Any]:
    """HF logits on the Harmony probes, the reference every GGUF is compared with: the saved bf16 weights in fp32
    arithmetic on every machine (probes.float32_forward), as llama.cpp computes a BF16 GGUF. A bf16 forward on CUDA
    was no reference: against it the correct BF16 GGUF of the 2-layer real shape measured rel_p90 0.74, median 0.081
    (0.037 against fp32 arithmetic).

    Where the model computes in bf16 (CUDA), that bf16 forward is also run: its distance from the fp32 reference,
    ``rounding_sensitivity``, scales the BF16 GGUF's tolerance (GgufSettings.gguf_bf16_sensitivity_factor).
    ``precision``: the load (default pipeline_lib.modeling.inference_precision())."""
    import torch

    from pipeline_lib.fingerprint import compute_dtype
    from pipeline_lib.modeling import inference_precision, load_causal_lm
    from pipeline_lib.tokenizer import load_gpt_oss_tokenizer

    probes = harmony_probe_ids()
    tokenizer = load_gpt_oss_tokenizer(hf_dir)
    texts = [tokenizer.decode(ids, skip_special_tokens=False) for ids in probes]
    model = load_causal_lm(hf_dir, precision or inference_precision()).eval()
    logits = probe_logits(model, probes, float32=True)
    sensitivity = None
    if compute_dtype(model) != "float32":
        sensitivity = {k: v for k, v in logits_agreement(logits, probe_logits(model, probes)).items()
                       if k in ("rel_median", "rel_p90", "argmax_agreement")}
        sensitivity["forward"] = compute_dtype(model)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"probes": probes, "texts": texts, "logits": logits.numpy(), "rounding_sensitivity": sensitivity}


def export_gguf(hf_dir: Path, gguf_dir: Path, name: str, tools: LlamaCppTools, settings: GgufSettings,
                hf_reference: dict[str, Any] | None = None, progress=None) -> dict[str, Any]:
    """BF16 conversion, each quant, and validation of every file; returns the manifest's "gguf" section."""
    step = progress or (lambda description: None)
    config = json.loads((hf_dir / "config.json").read_text())
    gguf_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(gguf_dir, PROBE_PREFIX)  # left by a run killed during validation
    step("convert to BF16 GGUF")
    bf16 = convert_to_gguf(hf_dir, gguf_dir / f"{name}-BF16.gguf", tools, "bf16")
    step("HF reference logits")
    hf_reference = hf_reference or hf_reference_logits(hf_dir)
    step("validate BF16 GGUF (llama.cpp logits against HF)")
    files = {"BF16": validate_gguf(bf16, hf_reference, config, tools, settings, quantized=False)}
    for quant in settings.quants:
        step(f"quantize {quant}")
        try:
            out = quantize_gguf(bf16, gguf_dir / f"{name}-{quant}.gguf", quant, settings.n_threads)
            step(f"validate {quant} GGUF")
            files[quant] = validate_gguf(out, hf_reference, config, tools, settings, quantized=True)
        except Exception as exc:
            files[quant] = {"passed": False, "checks": {"quantize": check(False, True, False, error=str(exc)[:2000])}}
    if not settings.keep_bf16_gguf:
        bf16.unlink()
        files["BF16"]["deleted_after_validation"] = True
    return {"status": "ok" if all(f["passed"] for f in files.values()) else "failed_validation",
            "passed": all(f["passed"] for f in files.values()),
            "llama_cpp_commit": tools.commit, "llama_cpp_source": tools.source, "files": files,
            "thresholds": settings.thresholds(),
            "hf_reference": "the saved weights, eager attention and experts, fp32 arithmetic (probes.float32_forward)",
            "rounding_sensitivity": hf_reference.get("rounding_sensitivity")}


# ---------------------------------------------------------------- Phase 5 as a whole


def export_model(checkpoints_dir: str | os.PathLike, model: str, merged_model: str | os.PathLike,
                 output_dir: str | os.PathLike, *, gguf: bool = True, merge_settings: MergeSettings | None = None,
                 gguf_settings: GgufSettings | None = None, config: dict[str, Any] | None = None,
                 progress=None) -> dict[str, Any]:
    """Best adapter -> right base -> ``output_dir/hf`` (merge checks) -> ``output_dir/gguf_q4`` (validated GGUF).
    Writes ``output_dir/manifest.json``. Raises only when there is no adapter or the HF export itself fails to run;
    failed checks are in the manifest."""
    output_dir = Path(output_dir)
    gguf_settings = gguf_settings or GgufSettings()
    best = find_best_adapter(checkpoints_dir)
    if best is None:
        folders = ", ".join(f"{checkpoints_dir}/{folder}/final" for _, folder in ADAPTER_PRIORITY)
        raise FileNotFoundError(f"--checkpoints_dir {checkpoints_dir}: no adapter_config.json in any of {folders}")
    phase, adapter = best
    base = choose_export_base(phase, model, merged_model)
    hf_manifest = merge_adapter(base, adapter, output_dir / "hf", settings=merge_settings, progress=progress,
                                extra={"config": config or {}, "mode": phases.EXPORT.name})
    manifest: dict[str, Any] = {
        "kind": phases.EXPORT.name,
        "source_adapter": {"phase": phase, "path": str(adapter)},
        "base_model": base,
        "hf": {"path": str(output_dir / "hf"), "passed": hf_manifest["passed"], "checks": hf_manifest["checks"]},
        "gguf": {"status": "disabled (--no-gguf)", "passed": None},
    }
    if gguf and hf_manifest["passed"]:
        name = output_dir.name.removesuffix("-export")
        try:
            tools = resolve_llama_cpp(gguf_settings.llama_cpp_dir, gguf_settings.llama_cpp_sdist)
            manifest["gguf"] = export_gguf(output_dir / "hf", output_dir / "gguf_q4", name, tools, gguf_settings,
                                           progress=progress)
        except Exception as exc:
            manifest["gguf"] = {"status": "error", "passed": False, "error": f"{type(exc).__name__}: {exc}"[:4000]}
    elif gguf:
        manifest["gguf"] = {"status": "skipped: HF export failed its checks", "passed": False}
    manifest["passed"] = hf_manifest["passed"]  # the writeup: GGUF failing alone still counts as a good export
    manifest["gguf_warning"] = manifest["gguf"]["passed"] is False
    if hf_manifest["passed"]:
        manifest.update(write_ready_to_use_files(manifest, Path(checkpoints_dir), output_dir))
    manifest["provenance"] = provenance(config or {})
    write_json_atomic(output_dir / "manifest.json", manifest)
    return manifest


def write_ready_to_use_files(manifest: dict[str, Any], checkpoints_dir: Path, output_dir: Path) -> dict[str, Any]:
    """hf/README.md (model card) and, when a GGUF passed validation, gguf_q4/Modelfile (Ollama); returns where."""
    from pipeline_lib.formatters import CODING_AGENT_DEV_PROMPT
    from pipeline_lib.model_card import model_card, modelfile, pick_gguf

    card = output_dir / "hf" / "README.md"
    card.write_text(model_card(manifest, checkpoints_dir, list(reversed(ADAPTER_PRIORITY)), checkpoints_dir.parent))
    written: dict[str, Any] = {"model_card": str(card), "modelfile": None}
    quant = pick_gguf(manifest["gguf"].get("files") or {})
    if quant:
        gguf_name = f"{output_dir.name.removesuffix('-export')}-{quant}.gguf"
        target = output_dir / "gguf_q4" / "Modelfile"
        target.write_text(modelfile(gguf_name, system=CODING_AGENT_DEV_PROMPT))  # the agent data's developer prompt
        written["modelfile"] = str(target)
    return written


# ---------------------------------------------------------------- child-process entry points


def _quantize_main(args: argparse.Namespace) -> int:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_FTYPES[args.quant]
    params.nthread = args.threads
    return int(llama_cpp.llama_model_quantize(str(args.src).encode(), str(args.dst).encode(), ctypes.byref(params)))


def _logits_main(args: argparse.Namespace) -> int:
    import numpy as np
    from llama_cpp import Llama

    request = json.loads(Path(args.request).read_text())
    longest = max(len(ids) for ids in request["probes"])
    llm = Llama(model_path=str(args.gguf), n_ctx=max(128, longest), n_batch=max(128, longest), logits_all=True,
                n_threads=args.threads, n_gpu_layers=0, verbose=False)
    rows, tokenized = [], []
    for ids, text in zip(request["probes"], request["texts"], strict=True):
        llm.reset()
        llm.eval(ids)
        rows.append(np.array(llm.scores[: len(ids)], dtype=np.float32))
        tokenized.append(llm.tokenize(text.encode(), add_bos=False, special=True))
    np.save(args.out, np.concatenate(rows))
    Path(args.request).with_suffix(".tokens.json").write_text(json.dumps({"tokens": tokenized,
                                                                         "metadata": dict(llm.metadata)}))
    return 0


def _child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="llama.cpp steps run in a child process by pipeline_lib.gguf_export")
    sub = parser.add_subparsers(dest="command", required=True)
    quant = sub.add_parser("quantize")
    quant.add_argument("src")
    quant.add_argument("dst")
    quant.add_argument("quant", choices=sorted(QUANT_FTYPES))
    quant.add_argument("--threads", type=int, default=2)
    logits = sub.add_parser("logits")
    logits.add_argument("gguf")
    logits.add_argument("request")
    logits.add_argument("out")
    logits.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    return _quantize_main(args) if args.command == "quantize" else _logits_main(args)


if __name__ == "__main__":
    sys.exit(_child_main())
