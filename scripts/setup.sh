#!/usr/bin/env bash
# Create ./.venv and install qlora_nb into it (editable). `bash scripts/setup.sh dev` adds the dev extra.
# Every install is pinned by constraints.txt (the versions the tests last passed with); CONSTRAINTS= (empty) installs
# the newest versions pyproject.toml allows instead, to regenerate that file (README, "Upgrading dependencies").
# torch: a CPU build when no NVIDIA driver is present (these machines keep torch 2.13.0 CPU on disk);
# on a GPU machine, pip's default torch (a CUDA build of the pinned release).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
CONSTRAINTS=${CONSTRAINTS-constraints.txt}
PIN=()
if [ -n "$CONSTRAINTS" ]; then
  [ -f "$CONSTRAINTS" ] || { echo "setup.sh: constraints file '$CONSTRAINTS' not found" >&2; exit 1; }
  PIN=(-c "$CONSTRAINTS")
fi
# pip install, quiet and pinned. Dropped: this machine's pip-config notices about local index folders that lack a package.
# pipefail keeps pip's own exit status, so a failed install still stops the script.
pipq() {
  python -m pip install -q ${PIN[@]+"${PIN[@]}"} "$@" 2>&1 |
    { grep -v -E "^WARNING: Location '[^']*' is ignored: it is neither a file nor a directory\.$" || true; }
}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pipq --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then pipq torch
  else pipq torch==2.13.0 || pipq torch --index-url https://download.pytorch.org/whl/cpu; fi
fi
if [ "${1:-}" = "dev" ]; then target=".[dev]"; else target="."; fi
# setuptools' notice that ./qlora_nb shadows the installed package is the point of an editable install: not shown
PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Editable installation" pipq -e "$target"
python -c "import qlora_nb, torch; print(f'qlora_nb {qlora_nb.__version__} installed (torch {torch.__version__})')"
