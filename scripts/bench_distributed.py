"""Multi-GPU scaling through the user path: 1 GPU (`qlora-nb train`), DDP x2 and FSDP x2 (`qlora-nb launch`).

    python scripts/bench_distributed.py --out nbs/bench/multigpu_results.json [--rows one,ddp2,fsdp2_lora,fsdp2_layers] [--data real|syn2048]
    python scripts/bench_distributed.py --rows fsdp2_32b --steps 6 --append   # the biggest model: 32B-class Llama, FSDP on 2 GPUs

Builds the model from its config with random weights (Mistral-7B-v0.1, or a 32B-class Llama: 64 layers, hidden 5120,
MLP 27648, GQA 40/8 heads) and a word-level tokenizer (bench_gpu.build_checkpoint), saves it to /tmp, and loads it
through the normal 4-bit `from_pretrained` path. Data (built, not downloaded): `real` = bench_gpu's instruction rows with
real-length distribution (log-normal, median ~200 tokens, tail to 2,048), packed with completion-only loss, as the
shipped recipe trains; `syn2048` = full 2,048-token rows, unpacked. Every row trains in its own processes through the CLI
the user types (one process with `CUDA_VISIBLE_DEVICES=0`, as the one-process guard says; `qlora-nb launch` for two).
Reads tokens/s (median per-step rate after the warm-up steps, all GPUs' non-padding tokens), the median step time, and
rank 0's peak memory from the run directory, and puts `gpu_estimate` of the same recipe beside it.

FSDP rows differ by `distributed.fsdp_wrap` (lora: peft's unit per LoRA matrix; layers: decoder layers as units) and,
for `fsdpv2_*`, by `distributed.fsdp_version = 2` (FSDP2; `fsdp2_*` rows are FSDP1 on 2 GPUs, named before FSDP2 existed here).
`--append` adds the rows to an existing results file (replacing rows of the same key), so that rows measured in
separate calls on the same machine kind form one table. Benchmark code, outside the library.
"""
import argparse, json, os, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.bench_gpu import MISTRAL_7B, build_checkpoint, full_length_rows, real_length_rows  # noqa: E402

LLAMA_32B = dict(hidden_size=5120, intermediate_size=27648, num_hidden_layers=64, num_attention_heads=40,
                 num_key_value_heads=8, vocab_size=32000, max_position_embeddings=4096, tie_word_embeddings=False,
                 rms_norm_eps=1e-5, rope_theta=1e6)   # Qwen2.5-32B's shape without biases, Llama's 32k vocabulary: 32.5B params
ROWS = { # name -> (label, strategy, processes, distributed.fsdp_wrap, model)
    'one_upcast': ('1 GPU, fp32 upcast', 'none', 1, 'lora', '7b'), 'one': ('1 GPU', 'none', 1, 'lora', '7b'),
    'ddp2': ('DDP x2', 'ddp', 2, 'lora', '7b'),
    'fsdp2_lora': ('FSDP x2, LoRA units', 'fsdp', 2, 'lora', '7b'),
    'fsdp2_layers': ('FSDP x2, layer units', 'fsdp', 2, 'layers', '7b'),
    'fsdp2_32b': ('FSDP x2, 32B-class, LoRA units', 'fsdp', 2, 'lora', '32b'),
    'fsdp2_32b_layers': ('FSDP x2, 32B-class, layer units', 'fsdp', 2, 'layers', '32b'),
    'fsdpv2_lora': ('FSDP2 x2, LoRA units', 'fsdp', 2, 'lora', '7b'),
    'fsdpv2_layers': ('FSDP2 x2, layer units', 'fsdp', 2, 'layers', '7b')}
FSDP_VERSION = {'fsdpv2_lora': 2, 'fsdpv2_layers': 2}   # distributed.fsdp_version of a row (default 1)

def write_data(path:Path, kind:str, vocab:int, seq_len:int=2048) -> Path:
    "JSONL rows: `real` (prompt/completion, real-length distribution) or `syn2048` (rows of exactly seq_len tokens)"
    rows = real_length_rows(2000, vocab, max_len=seq_len) if kind == 'real' else full_length_rows(256, vocab, seq_len)
    with open(path, 'w') as f:
        for r in rows: f.write(json.dumps(r) + '\n')
    return path

def row_recipe(mdir, work:Path, key:str, steps:int, batch:int, seq_len:int, data:str) -> dict:
    _, strategy, n, wrap, _ = ROWS[key]
    return {'model.name_or_path': str(mdir), 'quantization.quant_storage': 'bfloat16', 'data.max_length': seq_len,
            'data.completion_only': True, 'data.packing': data == 'real', 'training.batch_size': batch, 'training.grad_accum': 1,
            'training.optimizer': 'adamw_torch', 'lora.dropout': 0.0, 'training.max_steps': steps,
            'training.logging_steps': 1, 'training.save_steps': 10_000, 'training.upcast_norms': key == 'one_upcast',
            'distributed.strategy': strategy, 'distributed.num_processes': n, 'distributed.fsdp_wrap': wrap,
            'distributed.fsdp_version': FSDP_VERSION.get(key, 1),
            'output.dir': str(work/'runs'), 'output.name': key}

def run_row(key:str, over:dict, data:Path, env:dict, log) -> float:
    "Train one row through the CLI; returns wall seconds"
    opts = ['--data', str(data), '--overwrite'] + [a for k, v in over.items() for a in (f'--{k}', str(v).lower() if isinstance(v, bool) else str(v))]
    verb = 'train' if ROWS[key][2] == 1 else 'launch'
    if ROWS[key][2] == 1: env = {**env, 'CUDA_VISIBLE_DEVICES': '0'}
    t0 = time.time()
    p = subprocess.run([sys.executable, '-m', 'qlora_nb.cli', verb, *opts], env=env, stdout=log, stderr=subprocess.STDOUT)
    if p.returncode: raise RuntimeError(f'{key}: exit {p.returncode}; see the log')
    return time.time() - t0

def measure(key:str, over:dict, mdir, wall:float, warm:int=2) -> dict:
    from qlora_nb.distributed import gpu_estimate
    from qlora_nb.recipe import Recipe
    from qlora_nb.run import Run
    label, strategy, n, wrap, model = ROWS[key]
    from qlora_nb.distributed import fsdp_wrap
    r = Recipe().override(**over)
    run = Run.of(r)
    s, log = run.summary(), [row for row in run.log() if 'loss' in row]
    rates = [row['tokens_per_s'] for row in log if 'tokens_per_s' in row and row['step'] > warm]
    steps = [b['time'] - a['time'] for a, b in zip(log, log[1:]) if a['step'] >= warm]
    est = gpu_estimate(r, str(mdir), n)
    peak, e = s['peak_mem_gb'], est.peak_allocated_gb
    return dict(name=label, key=key, strategy=strategy, n_gpus=n, model=model,
                fsdp_wrap=fsdp_wrap(r)[0] if strategy == 'fsdp' else None, steps=s['steps'],
                batch_per_gpu=r.training.batch_size, seq_len=r.data.max_length, packing=r.data.packing,
                tokens_per_s=round(statistics.median(rates), 1), tokens_per_s_per_gpu=round(statistics.median(rates) / n, 1),
                step_s=round(statistics.median(steps), 3), peak_gb_per_gpu=round(peak, 3), estimate_gb_per_gpu=round(e, 3),
                estimate_error_pct=round(100 * (e - peak) / peak, 1), train_seconds=s['train_seconds'], wall_seconds=round(wall, 1),
                first_loss=s['first_loss'], final_loss=s['final_loss'], step_rates=rates)

def table(rows:list) -> str:
    base = {r['model']: r for r in rows if r['key'] == 'one'}
    ddp = next((r for r in rows if r['key'] == 'ddp2'), None)
    lines = ['| row | model | tokens/s (all GPUs) | × 1 GPU | step s | step vs DDP | peak GB/GPU | estimate | err % |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        one = base.get(r['model']) if r['model'] == '7b' else None
        lines.append(f"| {r['name']} | {r['model']} | {r['tokens_per_s']:,.0f} | {r['tokens_per_s']/one['tokens_per_s']:.2f}× | " if one else
                     f"| {r['name']} | {r['model']} | {r['tokens_per_s']:,.0f} | — | ")
        lines[-1] += (f"{r['step_s']:.3f} | {r['step_s']/ddp['step_s']:.2f}× | " if ddp and r['model'] == '7b' and r['n_gpus'] == 2 else f"{r['step_s']:.3f} | — | ")
        lines[-1] += f"{r['peak_gb_per_gpu']:.2f} | {r['estimate_gb_per_gpu']:.2f} | {r['estimate_error_pct']:+.1f} |"
    return '\n'.join(lines)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default='nbs/bench/multigpu_results.json')
    ap.add_argument('--work', default='/tmp/qlora-mg')
    ap.add_argument('--rows', default='one,ddp2,fsdp2_lora,fsdp2_layers')
    ap.add_argument('--data', default='real', choices=['real', 'syn2048'])
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--seq-len', type=int, default=2048)
    ap.add_argument('--append', action='store_true', help='add the rows to --out (same key: replaced) instead of a new file')
    a = ap.parse_args()
    import torch
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
    keys = [k.strip() for k in a.rows.split(',') if k.strip()]
    bad = [k for k in keys if k not in ROWS]
    if bad: sys.exit(f'Unknown row(s) {bad}; choose from {", ".join(ROWS)}')
    models, build = {}, {}
    for m in dict.fromkeys(ROWS[k][4] for k in keys):
        mdir = Path(f'/tmp/qlora_bench_mistral7b') if m == '7b' else work/'llama32b-random'
        t0 = time.time()
        if not (mdir/'config.json').exists(): build_checkpoint(mdir, tiny=False, cpu=False, **({} if m == '7b' else {'config': LLAMA_32B}))
        models[m], build[m] = mdir, round(time.time() - t0, 1)
    data = write_data(work/f'{a.data}.jsonl', a.data, 32000, a.seq_len)
    base_env = {**os.environ, 'NCCL_NVLS_ENABLE': '0', 'TOKENIZERS_PARALLELISM': 'false'}
    res = dict(device=torch.cuda.get_device_name(0), n_gpus_visible=torch.cuda.device_count(), torch=torch.__version__,
               data=a.data, batch_per_gpu=a.batch, seq_len=a.seq_len, steps=a.steps, warmup_steps=2, build_seconds=build,
               recipe='NF4 + double quant (quant_storage bf16), bf16 compute without the fp32 upcast, LoRA r16 on 7 projections, '
                      'dropout 0, adamw_torch, every layer checkpointed, attention as resolve() chooses',
               peak='torch.cuda.max_memory_allocated on rank 0 (the run summary)', estimate='gpu_estimate(recipe).peak_allocated_gb',
               rows=[], failed={})
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    if a.append and out.exists():
        old = json.loads(out.read_text())
        res['rows'] = [r for r in old.get('rows', []) if r['key'] not in keys]
        res['build_seconds'] = {**old.get('build_seconds', {}), **build}
    for key in keys:
        over = row_recipe(models[ROWS[key][4]], work, key, a.steps, a.batch, a.seq_len, a.data)
        env = base_env
        with open(work/f'{key}.log', 'w') as log:
            try: res['rows'] = [r for r in res['rows'] if r['key'] != key] + [measure(key, over, models[ROWS[key][4]], run_row(key, over, data, env, log))]
            except Exception as e:
                res['failed'][key] = repr(e)[:300] + ' | ' + ' / '.join((work/f'{key}.log').read_text(errors='replace').strip().splitlines()[-6:])[-1500:]
        print(key, res['rows'][-1] if res['rows'] and res['rows'][-1]['key'] == key else res['failed'].get(key), flush=True)
        out.write_text(json.dumps(res, indent=1))
    print(table(res['rows']))

if __name__ == '__main__': main()
