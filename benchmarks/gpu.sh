#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one call (about 5 minutes on one H200):
#   bash benchmarks/gpu.sh            # needs the package installed: pip install -e .
set -euo pipefail
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# The CPU suite's training tests, and the CUDA-graph test that only runs on a GPU.
python -m pytest -q -x tests/test_cuda_graph.py tests/test_train.py -k "graph or resume or folder"
python benchmarks/train_speed.py --device cuda --batch 128 --steps 200 --warmup 20 --peak-tflops 790 --cuda-graph
python benchmarks/train_speed.py --device cuda --batch 2048 --steps 50 --warmup 10 --peak-tflops 790 --skip-reference --cuda-graph
python benchmarks/train_speed.py --device cuda --res 128 --batch 512 --steps 50 --warmup 10 --peak-tflops 790 --skip-reference --cuda-graph
python benchmarks/sample_speed.py --n 10000 --device cuda
