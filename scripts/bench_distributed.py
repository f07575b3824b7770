"""Multi-GPU scaling through the user path: 1 GPU (`qlora-nb train`), DDP x2 and FSDP x2 (`qlora-nb launch`).

    python scripts/bench_distributed.py --out nbs/bench/multigpu_results.json [--steps 12] [--rows one_upcast,one,ddp2,fsdp2]

Builds the Mistral-7B architecture with random weights from its config, saves it to /tmp, writes random text cut to
full `seq_len`-token sequences, and trains each row in its own processes through the CLI the user types (a single
process with `CUDA_VISIBLE_DEVICES=0`, as the one-process guard says; two with `launch`). Reads tokens/s (median of the
per-step rates after the warm-up steps, all GPUs' tokens) and rank 0's peak memory from the run directory, and puts
`gpu_estimate` of the same recipe beside it. Benchmark code, outside the library.
"""
import argparse, json, os, random, statistics, subprocess, sys, time
from pathlib import Path

MISTRAL_7B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=32000, max_position_embeddings=4096)
ROWS = { # name -> (label, strategy, processes, upcast_norms)
    'one_upcast': ('1 GPU, fp32 upcast', 'none', 1, True), 'one': ('1 GPU', 'none', 1, False),
    'ddp2': ('DDP x2', 'ddp', 2, False), 'fsdp2': ('FSDP x2', 'fsdp', 2, False)}

def build_model(mdir:Path, cfg:dict=MISTRAL_7B):
    "The architecture with random bf16 weights, saved with the toy tokenizer (token ids < vocab; the text is random anyway)"
    if (mdir/'config.json').exists(): return mdir
    import torch
    from transformers import AutoModelForCausalLM, MistralConfig
    from qlora_nb.toy import build_toy_tokenizer
    with torch.device('cuda'): m = AutoModelForCausalLM.from_config(MistralConfig(**cfg), dtype=torch.bfloat16)
    m.save_pretrained(mdir); del m; torch.cuda.empty_cache()
    build_toy_tokenizer().save_pretrained(mdir)
    return mdir

def write_data(path:Path, seq_len:int=2048, n:int=256, n_short:int=4, seed:int=0) -> Path:
    "`n` rows of random letters longer than `seq_len` tokens (cut to exactly max_length), and `n_short` that end inside it (EOS is trained)"
    rng = random.Random(seed)
    text = lambda words: ' '.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(words))
    with open(path, 'w') as f:
        for i in range(n): f.write(json.dumps({'text': text(int(1.5 * seq_len) if i >= n_short else int(0.8 * seq_len))}) + '\n')
    return path

def row_recipe(mdir, work:Path, key:str, steps:int, batch:int, seq_len:int) -> dict:
    _, strategy, n, upcast = ROWS[key]
    return {'model.name_or_path': str(mdir), 'quantization.quant_storage': 'bfloat16', 'data.max_length': seq_len,
            'data.completion_only': False, 'data.packing': False, 'training.batch_size': batch, 'training.grad_accum': 1,
            'training.optimizer': 'adamw_torch', 'lora.dropout': 0.0, 'training.max_steps': steps,
            'training.logging_steps': 1, 'training.save_steps': 10_000, 'training.upcast_norms': upcast,
            'distributed.strategy': strategy, 'distributed.num_processes': n,
            'output.dir': str(work/'runs'), 'output.name': key}

def run_row(key:str, over:dict, data:Path, env:dict, log) -> float:
    "Train one row through the CLI; returns wall seconds"
    opts = ['--data', str(data), '--overwrite'] + [a for k, v in over.items() for a in (f'--{k}', str(v).lower() if isinstance(v, bool) else str(v))]
    from qlora_nb import cli
    if ROWS[key][2] == 1: cmd, env = [sys.executable, '-m', 'qlora_nb.cli', 'train', *opts], {**env, 'CUDA_VISIBLE_DEVICES': '0'}
    elif 'launch' in cli.COMMANDS: cmd = [sys.executable, '-m', 'qlora_nb.cli', 'launch', *opts]
    else:  # `qlora-nb launch` before the CLI wires the verb: the same function
        kw = dict(data=str(data), overwrite=True, **over)
        cmd = [sys.executable, '-c', f'import sys; from qlora_nb.distributed import launch; sys.exit(launch(**{kw!r}))']
    t0 = time.time()
    p = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if p.returncode: raise RuntimeError(f'{key}: exit {p.returncode}; see the log')
    return time.time() - t0

def measure(key:str, over:dict, mdir, wall:float, warm:int=2) -> dict:
    from qlora_nb.distributed import gpu_estimate
    from qlora_nb.recipe import Recipe
    from qlora_nb.run import Run
    label, strategy, n, upcast = ROWS[key]
    r = Recipe().override(**over)
    run = Run.of(r)
    s, log = run.summary(), run.log()
    rates = [row['tokens_per_s'] for row in log if 'tokens_per_s' in row and row['step'] > warm]
    tps = statistics.median(rates)
    est = gpu_estimate(r, str(mdir), n)
    peak, e = s['peak_mem_gb'], est.peak_allocated_gb
    return dict(name=label, key=key, strategy=strategy, n_gpus=n, upcast=upcast, steps=s['steps'],
                batch_per_gpu=r.training.batch_size, seq_len=r.data.max_length, tokens_per_s=round(tps, 1),
                step_s=round(n * r.training.batch_size * r.data.max_length / tps, 3), tokens_per_s_per_gpu=round(tps / n, 1),
                peak_gb_per_gpu=round(peak, 3), estimate_gb_per_gpu=round(e, 3), estimate_error_pct=round(100 * (e - peak) / peak, 1),
                train_seconds=s['train_seconds'], wall_seconds=round(wall, 1), first_loss=s['first_loss'], final_loss=s['final_loss'],
                step_rates=rates)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default='nbs/bench/multigpu_results.json')
    ap.add_argument('--work', default='/tmp/qlora-mg')
    ap.add_argument('--rows', default='fsdp2,ddp2,one,one_upcast')
    ap.add_argument('--steps', type=int, default=12)
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--seq-len', type=int, default=2048)
    a = ap.parse_args()
    import torch
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
    t0 = time.time(); mdir = build_model(work/'mistral7b-random'); build_s = time.time() - t0
    data = write_data(work/'random_text.jsonl', a.seq_len)
    env = {**os.environ, 'NCCL_NVLS_ENABLE': '0', 'TOKENIZERS_PARALLELISM': 'false'}
    res = dict(device=torch.cuda.get_device_name(0), n_gpus_visible=torch.cuda.device_count(), torch=torch.__version__,
               model='Mistral-7B architecture (random weights, 4-bit NF4 via from_pretrained)', data='random text, every example cut to seq_len',
               batch_per_gpu=a.batch, seq_len=a.seq_len, steps=a.steps, warmup_steps=2, build_seconds=round(build_s, 1),
               peak='torch.cuda.max_memory_allocated on rank 0 (the run summary)', estimate='gpu_estimate(recipe).peak_allocated_gb',
               rows=[], failed={})
    out = Path(a.out); out.parent.mkdir(parents=True, exist_ok=True)
    for key in a.rows.split(','):
        over = row_recipe(mdir, work, key, a.steps, a.batch, a.seq_len)
        with open(work/f'{key}.log', 'w') as log:
            try: res['rows'].append(measure(key, over, mdir, run_row(key, over, data, env, log)))
            except Exception as e: res['failed'][key] = repr(e)[:500]
        print(key, res['rows'][-1] if res['rows'] and res['rows'][-1]['key'] == key else res['failed'].get(key), flush=True)
        out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))

if __name__ == '__main__': main()
