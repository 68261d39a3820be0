#!/usr/bin/env bash
# Every GPU figure in docs/gpu.md, in one go, on a machine with CUDA:
#   bash benchmarks/gpu_all.sh OUT_FOLDER [quick]
# Writes OUT_FOLDER/*.log and *.json. "quick" runs only the checks, not the benchmarks.
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_all.sh OUT_FOLDER [quick]}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -c "import torch, torchvision, torchgan; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'torchgan', torchgan.__version__, torch.cuda.get_device_name())"

# 1. Host syncs per training step, finite losses, attention kernels.
python3 benchmarks/gpu_check.py --out "$out/gpu_check.json" 2>&1 | tee "$out/gpu_check.log"

# 2. The main job on the GPU, a resume from its checkpoint (metrics after the resume), and the after-training commands.
run=$(mktemp -d)/faces
python3 examples/celeba.py --device cuda --out "$run" --epochs 20 2>&1 | tail -n 25 | tee "$out/main_job.log"
python3 examples/celeba.py --device cuda --out "$run" --epochs 22 --resume 2>&1 | tail -n 25 | tee -a "$out/main_job.log"
for cmd in generate evaluate export; do
  extra=(); [ "$cmd" = evaluate ] && extra=(--real faces)
  python3 -m torchgan_sagan.$cmd "$run" --device cuda "${extra[@]}" 2>&1 | tail -n 8 | tee -a "$out/main_job.log"
done
[ "${2:-}" = quick ] && exit 0

# 3. Throughput and peak memory: torchgan's tutorial network against ours, and the 64 and 128 presets.
python3 benchmarks/throughput.py --device cuda --iters 20 --out "$out/throughput_64.json" \
  --nets tutorial-torchgan tutorial-ours tutorial-ours+cl tutorial-ours+bf16 sagan_celeba_64 sagan_celeba_64+bf16 \
  sagan_celeba_64+cl+bf16 sagan_resnet_celeba_64 sagan_resnet_celeba_64+bf16 2>&1 | tee "$out/throughput_64.log"
python3 benchmarks/throughput.py --device cuda --iters 10 --batch 64 --out "$out/throughput_128.json" \
  --nets sagan_cond_imagenet_128 sagan_cond_imagenet_128+bf16 sagan_resnet_imagenet_128 \
  sagan_resnet_imagenet_128+bf16 sagan_resnet_imagenet_128+cl+bf16 2>&1 | tee "$out/throughput_128.log"
