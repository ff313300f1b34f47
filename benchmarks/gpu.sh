#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one call (sized for under 5 minutes on one H200):
#   bash benchmarks/gpu.sh
# Runs from the source tree without installing (the GPU machine has no network): its python3
# needs torch, torchvision, numpy, Pillow, tqdm, matplotlib, safetensors and pytest; simplejpeg
# is optional.
set -euo pipefail
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# The CPU suite's training tests, and the CUDA-graph test that only runs on a GPU.
$PY -m pytest -q -x -p no:cacheprovider tests/test_cuda_graph.py tests/test_train.py -k "graph or resume or folder"
$PY benchmarks/train_speed.py --device cuda --batch 128 --steps 200 --warmup 20 --peak-tflops 790 --cuda-graph
$PY benchmarks/train_speed.py --device cuda --batch 2048 --steps 50 --warmup 10 --peak-tflops 790 --skip-reference --cuda-graph
$PY benchmarks/train_speed.py --device cuda --res 128 --batch 512 --steps 50 --warmup 10 --peak-tflops 790 --skip-reference --cuda-graph
$PY benchmarks/sample_speed.py --n 10000 --device cuda
