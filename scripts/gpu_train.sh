#!/usr/bin/env bash
# Continue a training run on a lent CUDA machine within a fixed budget, then hand it back to the CPU.
#
# Here, once:   .venv/bin/python -m infinitygan data prepare --out runs/prepared      (resized photos, ~2 MB)
# On the GPU:   bash scripts/gpu_train.sh      (device tool: carry runs/prepared; nothing is downloaded there)
# Back here:    cat FILES_AT/resume.safetensors.part-* > models/resume/landscapes-small.safetensors
#               .venv/bin/python -m infinitygan train --data data/landscapes --out runs/NAME \
#                   --resume-from models/resume/landscapes-small.safetensors      (continues on the CPU)
#
# Settings (environment): RESUME_POINT (default models/resume/landscapes-small.safetensors), DATA (runs/prepared),
# MINUTES of training (8, inside the device tool's 10-minute command limit), BATCH (32: a GPU wants bigger batches;
# a resumed run may change it), ITERATIONS (optional cap), DEVICE (cuda; cpu for the test), PYTHON (python3),
# OUT (the device tool's output folder; default out/gpu). The new resume point comes back split into parts of
# 15 MB, since the device tool returns files of at most 16 MiB; the EMA generator comes back whole.
set -euo pipefail
cd "$(dirname "$0")/.."
point=${RESUME_POINT:-models/resume/landscapes-small.safetensors}
data=${DATA:-runs/prepared}
out=${OUT:-out/gpu}
python=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out"
run=$(mktemp -d)/run
limit=()
[ -n "${ITERATIONS:-}" ] && limit=(--max-iterations "$ITERATIONS")
"$python" -m infinitygan train --data "$data" --out "$run" --resume-from "$point" --device "${DEVICE:-cuda}" \
  --max-minutes "${MINUTES:-8}" "${limit[@]}" --batch "${BATCH:-32}" --resume-point "$out/resume.safetensors" \
  --sample-every 0 --checkpoint-minutes 2 --quiet
cp "$run/generator.safetensors" "$out/generator.safetensors"
split -b 15000000 -d "$out/resume.safetensors" "$out/resume.safetensors.part-"
rm "$out/resume.safetensors"
ls -l "$out"
