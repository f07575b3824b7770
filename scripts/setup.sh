#!/usr/bin/env bash
# Create ./.venv and install qlora_nb into it (editable). `bash scripts/setup.sh dev` adds the dev extra.
# torch: a CPU build when no NVIDIA driver is present (these machines keep torch 2.13.0 CPU on disk);
# on a GPU machine, pip's default torch (a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then pip install -q torch
  else pip install -q torch==2.13.0 || pip install -q torch --index-url https://download.pytorch.org/whl/cpu; fi
fi
if [ "${1:-}" = "dev" ]; then pip install -q -e ".[dev]"; else pip install -q -e .; fi
python -c "import qlora_nb, torch; print(f'qlora_nb {qlora_nb.__version__} installed (torch {torch.__version__})')"
