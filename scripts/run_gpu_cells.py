#!/usr/bin/env python
"""Run notebooks with their `gpu` cells switched on (`slow`/`notest` still skipped), each in its own process, and report
pass/fail and wall time per notebook; with --out, keep each executed notebook (outputs included) for reading the figures.

    python scripts/run_gpu_cells.py                          # every notebook that has a `#| gpu` cell
    python scripts/run_gpu_cells.py --multigpu               # also the `multigpu` cells (55_distributed's FSDP run)
    python scripts/run_gpu_cells.py nbs/50_train.ipynb --out /tmp/executed"""
import argparse, json, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def gpu_notebooks() -> list:
    "Notebooks under nbs/ with at least one `#| gpu` or `#| multigpu` cell"
    return sorted(p for p in (ROOT/'nbs').rglob('*.ipynb')
                  if '.ipynb_checkpoints' not in p.parts and any(f in p.read_text() for f in ('"#| gpu', '"#| multigpu')))

def run_one(nb:Path, save_to:Path|None, multigpu:bool=False) -> bool:
    from nbdev.test import test_nb
    work = nb
    if save_to:  # execute a copy in the same folder (relative paths stay valid), keep it with its outputs
        work = nb.with_name(f'_gpu_exec_{nb.name}'); shutil.copy(nb, work)
    try:
        gpu = ['gpu', 'multigpu'] if multigpu else ['gpu']   # `multigpu` cells need two or more GPUs
        ok, secs = test_nb(work, skip_flags=['notest', 'slow'] + ([] if multigpu else ['multigpu']), force_flags=gpu,
                           save=bool(save_to), cell_timing_min=10)
        if save_to and ok: save_to.mkdir(parents=True, exist_ok=True); shutil.copy(work, save_to/nb.name)
    finally:
        if save_to: work.unlink(missing_ok=True)
    return ok

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('nbs', nargs='*', help='notebooks (default: every one with a gpu cell)')
    p.add_argument('--skip', default='', help='comma-separated name fragments to skip')
    p.add_argument('--out', default=None, help='folder for the executed notebooks and results.json')
    p.add_argument('--timeout', type=int, default=900, help='seconds per notebook')
    p.add_argument('--multigpu', action='store_true', help='also run `multigpu` cells (two or more GPUs)')
    p.add_argument('--one', default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    out = Path(a.out) if a.out else None
    if a.one: sys.exit(0 if run_one(Path(a.one), out, a.multigpu) else 1)
    nbs = [Path(n).resolve() for n in a.nbs] or gpu_notebooks()
    nbs = [n for n in nbs if not any(s and s in n.name for s in a.skip.split(','))]
    results = []
    for nb in nbs:
        t0 = time.time()
        cmd = [sys.executable, __file__, '--one', str(nb)] + (['--out', str(out)] if out else []) + (['--multigpu'] if a.multigpu else [])
        try: rc = subprocess.run(cmd, timeout=a.timeout, cwd=ROOT).returncode
        except subprocess.TimeoutExpired: rc = 'timeout'
        row = dict(notebook=str(nb.relative_to(ROOT)), ok=rc == 0, rc=rc, seconds=round(time.time() - t0, 1))
        results.append(row); print(row, flush=True)
        if out: out.mkdir(parents=True, exist_ok=True); (out/'results.json').write_text(json.dumps(results, indent=1))
    print(f"{sum(r['ok'] for r in results)} passed, {sum(not r['ok'] for r in results)} failed")
    sys.exit(0 if all(r['ok'] for r in results) else 1)

if __name__ == '__main__': main()
