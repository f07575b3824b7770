#!/usr/bin/env python
"""The user path on a GPU, as a user types it: `qlora-nb train` with the shipped settings.ini (the seed recipe: packing on,
NF4, fp32 upcast, paged AdamW 8-bit) on a Mistral-7B-architecture checkpoint (random weights) and real-length instruction
data, then (with two GPUs) `qlora-nb launch --distributed.strategy ddp` on the same data. Prints tokens/s and peak memory
from each run's log.jsonl. Nothing is downloaded: the checkpoint and the data are built here.

    python scripts/gpu_smoke.py --out /tmp/smoke [--steps 12] [--launch]"""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/'scripts'))
from bench_gpu import build_checkpoint, real_length_rows   # the same checkpoint and data as the benchmark

def summarize(run:Path) -> dict:
    rows = [json.loads(l) for l in (run/'log.jsonl').read_text().splitlines() if l.strip()]
    tps = [r['tokens_per_s'] for r in rows if 'tokens_per_s' in r][2:]
    s = json.loads((run/'summary.json').read_text())
    return dict(run=str(run), steps=s['steps'], tokens_per_s=round(statistics.median(tps)) if tps else None,
                peak_gb=s['peak_mem_gb'], first_loss=s['first_loss'], final_loss=s['final_loss'])

def main():
    p = argparse.ArgumentParser(); p.add_argument('--out', default='/tmp/smoke'); p.add_argument('--steps', type=int, default=12)
    p.add_argument('--launch', action='store_true'); a = p.parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    ckpt = Path('/tmp/qlora_nb-mistral7b-smoke')
    if not (ckpt/'config.json').exists(): print(f'checkpoint built in {build_checkpoint(ckpt, tiny=False, cpu=False):.0f}s', flush=True)
    data = out/'real.jsonl'
    data.write_text('\n'.join(json.dumps(r) for r in real_length_rows(1200, 32000)) + '\n')
    common = ['--data', str(data), '--model.name_or_path', str(ckpt), '--training.max_steps', str(a.steps),
              '--training.logging_steps', '1', '--training.save_steps', '1000', '--output.dir', str(out/'runs')]
    res = {}
    t0 = time.time()
    r = subprocess.run([sys.executable, '-m', 'qlora_nb.cli', 'train', *common, '--output.name', 'one_gpu'], cwd=ROOT,
                       env={**os.environ, 'CUDA_VISIBLE_DEVICES': '0'})
    res['one_gpu'] = dict(rc=r.returncode, wall_s=round(time.time() - t0), **(summarize(out/'runs/one_gpu') if r.returncode == 0 else {}))
    print(json.dumps(res['one_gpu']), flush=True)
    if a.launch:
        t0 = time.time()
        r = subprocess.run([sys.executable, '-m', 'qlora_nb.cli', 'launch', *common, '--output.name', 'ddp2',
                            '--distributed.strategy', 'ddp'], cwd=ROOT, env={**os.environ, 'NCCL_NVLS_ENABLE': '0'})
        res['ddp2'] = dict(rc=r.returncode, wall_s=round(time.time() - t0), **(summarize(out/'runs/ddp2') if r.returncode == 0 else {}))
        print(json.dumps(res['ddp2']), flush=True)
    (out/'smoke.json').write_text(json.dumps(res, indent=1))

if __name__ == '__main__': main()
