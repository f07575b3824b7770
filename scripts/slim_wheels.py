#!/usr/bin/env python
"""Copy the GPU machine's wheels (`.whl`, from ../shared/gpu/wheels.sh, and `.whl-unsloth`, from WHEELS=unsloth) into
`.whl-gpu/{base,unsloth}` without the parts that machine never loads, so that both sets travel in one call (the carry
limit is 64 MiB; together they are ~103 MB): bitsandbytes keeps only its CUDA 13 and CPU libraries (the machine has
torch 2.11 + CUDA 13), Unsloth drops `studio/` (its web UI). Every other file is copied unchanged, and each wheel's
RECORD lists exactly the files it keeps, so pip installs it as usual.

    python scripts/slim_wheels.py          # then carry `.whl-gpu`
"""
import re, shutil, sys, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DROP = {'bitsandbytes': re.compile(r'bitsandbytes/libbitsandbytes_(cuda1[12]\d|rocm\d+|xpu\d+)\.so$'),
        'unsloth': re.compile(r'^studio/')}

def slim(src:Path, dst:Path) -> tuple:
    "Copy wheel `src` to `dst` without the entries DROP names for its project; returns (bytes before, bytes after)"
    drop = next((rx for name, rx in DROP.items() if src.name.startswith(name + '-')), None)
    if drop is None: shutil.copy(src, dst); return src.stat().st_size, dst.stat().st_size
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, 'w', zipfile.ZIP_DEFLATED) as zo:
        keep = [i for i in zi.infolist() if not drop.search(i.filename)]
        for info in keep:
            data = zi.read(info)
            if info.filename.endswith('.dist-info/RECORD'):
                data = '\n'.join(l for l in data.decode().splitlines() if not drop.search(l.split(',')[0])).encode() + b'\n'
            zo.writestr(info, data)
    return src.stat().st_size, dst.stat().st_size

def main():
    out = ROOT/'.whl-gpu'
    shutil.rmtree(out, ignore_errors=True)
    total = 0
    for name, folder in (('base', '.whl'), ('unsloth', '.whl-unsloth')):
        wheels = sorted((ROOT/folder).glob('*.whl'))
        if not wheels: sys.exit(f"{folder} has no wheels: run {'WHEELS=unsloth ' if name == 'unsloth' else ''}../shared/gpu/wheels.sh first.")
        (out/name).mkdir(parents=True)
        for w in wheels:
            before, after = slim(w, out/name/w.name)
            total += after
            if after < before: print(f'{w.name}: {before/2**20:.1f} -> {after/2**20:.1f} MiB')
    print(f'.whl-gpu: {total/2**20:.1f} MiB')

if __name__ == '__main__': main()
