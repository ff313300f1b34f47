#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one call (about 5 minutes on one H200):
#   bash benchmarks/gpu.sh            # needs the package installed: pip install -e .
set -euo pipefail
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
python -m pytest -q tests/test_train.py -k "resume or folder" -x   # the CPU suite's training tests still pass here
python benchmarks/train_speed.py --device cuda --batch 128 --steps 200 --warmup 20 --peak-tflops 790
python benchmarks/train_speed.py --device cuda --batch 2048 --steps 50 --warmup 10 --peak-tflops 790 --skip-reference
python benchmarks/sample_speed.py --n 10000 --device cuda
python benchmarks/train_speed.py --device cuda --res 128 --batch 512 --steps 50 --warmup 10 --peak-tflops 790
