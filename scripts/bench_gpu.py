#!/usr/bin/env python
"""Benchmark qlora_nb's fast path on a GPU: Mistral-7B-v0.1 architecture (random weights) loaded through `load_model`
in 4 bits, LoRA r=16 on the seven projections, trl's SFTTrainer with paged AdamW 8-bit, one process per configuration.

    python scripts/bench_gpu.py --out bench.json                 # every configuration (about 8 minutes on an H200)
    python scripts/bench_gpu.py --configs seed_b4,liger_b4       # a subset
    python scripts/bench_gpu.py --tiny --cpu --configs seed_b1   # a 2-layer model on CPU: tests this script's logic

tokens/s = batch·seq / median step time (after warm-up); peak = torch.cuda.max_memory_allocated() over the training
steps; `est_gb` is qlora_nb.memory.estimate_memory's peak-allocated estimate (no framework overhead) for the same run."""
import argparse, datetime, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> settings (defaults: batch 4, seq 2048, r 16, every layer checkpointed, peft preparation, no Liger/offloading)
# `base`: the seed configuration this one is compared with (same batch and length)
CONFIGS = {
    'seed_b4':            dict(batch=4),
    'seed_b1':            dict(batch=1),
    'liger_b4':           dict(batch=4, liger=True, base='seed_b4'),
    'liger_offload_b4':   dict(batch=4, liger=True, offload=True, base='seed_b4'),
    'liger_nockpt_b4':    dict(batch=4, liger=True, ckpt=0, base='seed_b4'),
    'bf16_liger_b4':      dict(batch=4, liger=True, prep='bf16', base='seed_b4'),
    'bf16_liger_offload_b4': dict(batch=4, liger=True, prep='bf16', offload=True, base='seed_b4'),
    'bf16_liger_b1':      dict(batch=1, liger=True, prep='bf16', base='seed_b1'),
    'bf16_liger_offload_b1': dict(batch=1, liger=True, prep='bf16', offload=True, base='seed_b1'),
    'bf16_liger_nockpt_b4': dict(batch=4, liger=True, prep='bf16', ckpt=0, base='seed_b4'),
    'autofit40_b4':       dict(batch=4, liger=True, prep='bf16', ckpt='auto', free_gb=40, base='seed_b4'),
    'autofit_h200_b4':    dict(batch=4, liger=True, prep='bf16', ckpt='auto', free_gb=None, base='seed_b4'),
    'seed_32k':           dict(batch=1, seq=32768, steps=3, warmup=1),
    'bf16_liger_offload_32k': dict(batch=1, seq=32768, liger=True, prep='bf16', offload=True, steps=3, warmup=1, base='seed_32k'),
    # estimator validation: other batch, length, rank, checkpointing
    'val_b2_s1024_r64':   dict(batch=2, seq=1024, r=64, steps=2, warmup=1),
    'val_b1_s4096_nockpt': dict(batch=1, seq=4096, ckpt=0, steps=2, warmup=1),
    'val_b8_s512_r8':     dict(batch=8, seq=512, r=8, steps=2, warmup=1),
    'val_b2_s2048_nockpt_r32': dict(batch=2, seq=2048, r=32, ckpt=0, steps=2, warmup=1),
    # LoRA dropout 0 (Unsloth's default: peft then skips the dropout copies) and torch.compile of each decoder layer
    'fast_d0_b4':         dict(batch=4, liger=True, prep='bf16', offload=True, dropout=0.0, base='seed_b4'),
    'fast_d0_b1':         dict(batch=1, liger=True, prep='bf16', offload=True, dropout=0.0, base='seed_b1'),
    'fast_d0_32k':        dict(batch=1, seq=32768, liger=True, prep='bf16', offload=True, dropout=0.0, steps=3, warmup=1, base='seed_32k'),
    'bf16_liger_d0_b4':   dict(batch=4, liger=True, prep='bf16', dropout=0.0, base='seed_b4'),
    'compile_liger_d0_offload_b4': dict(batch=4, liger=True, prep='bf16', offload=True, dropout=0.0, compile=True, warmup=3, base='seed_b4'),
    'compile_d0_offload_b4': dict(batch=4, prep='bf16', offload=True, dropout=0.0, compile=True, warmup=3, base='seed_b4'),
    'compile_d0_b4':      dict(batch=4, prep='bf16', dropout=0.0, compile=True, warmup=3, base='seed_b4'),
    'compile_liger_d0_offload_b1': dict(batch=1, liger=True, prep='bf16', offload=True, dropout=0.0, compile=True, warmup=3, base='seed_b1'),
    'val_bf16_b2_s1024_r64': dict(batch=2, seq=1024, r=64, liger=True, prep='bf16', steps=2, warmup=1),
    'val_bf16_d0_b1_s4096_nockpt': dict(batch=1, seq=4096, liger=True, prep='bf16', dropout=0.0, ckpt=0, steps=2, warmup=1),
}
DEFAULTS = dict(batch=4, seq=2048, r=16, ckpt=-1, prep='peft', liger=False, offload=False, dropout=0.05, compile=False, free_gb=None,
                steps=5, warmup=2, base=None)

MISTRAL_7B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768, tie_word_embeddings=False,
                  rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=None)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=512, max_position_embeddings=4096, tie_word_embeddings=False)

def build_checkpoint(path:Path, tiny:bool, cpu:bool):
    "Save a Mistral model with random weights and a word-level tokenizer of the same vocabulary to `path`"
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast
    cfg = MistralConfig(**(TINY if tiny else MISTRAL_7B), bos_token_id=1, eos_token_id=2)
    t0 = time.time()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device('cpu' if cpu else 'cuda'): model = MistralForCausalLM(cfg)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(path, safe_serialization=True)
    vocab = {'<unk>': 0, '<s>': 1, '</s>': 2, **{f'w{i}': i for i in range(3, cfg.vocab_size)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token='<unk>')); tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token='<unk>', bos_token='<s>', eos_token='</s>').save_pretrained(path)
    return time.time() - t0

def run_one(name:str, ckpt_dir:str, out:Path, cpu:bool, steps:int|None, warmup:int|None):
    "Train one configuration and write its result (tokens/s, peak GB, estimate) as JSON to `out`"
    import torch
    from datasets import Dataset
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoConfig, TrainerCallback
    from trl import SFTTrainer
    from qlora_nb.recipe import Recipe
    from qlora_nb.model import load_model
    from qlora_nb.lora import lora_config
    from qlora_nb.train import sft_config
    from qlora_nb import fast
    s = {**DEFAULTS, **CONFIGS[name]}
    if steps: s['steps'] = steps
    if warmup is not None: s['warmup'] = warmup
    r = Recipe().override(**{'model.name_or_path': ckpt_dir, 'model.attn_implementation': 'sdpa',
        'data.max_length': s['seq'], 'data.completion_only': False, 'lora.r': s['r'], 'lora.alpha': 2*s['r'],
        'lora.dropout': s['dropout'], 'training.batch_size': s['batch'], 'training.grad_accum': 1,
        'training.max_steps': s['warmup'] + s['steps'], 'training.warmup': 0, 'training.liger': s['liger'],
        'training.activation_offloading': s['offload'], 'training.gradient_checkpointing': s['ckpt'] != 0,
        'training.logging_steps': 10**6, 'training.save_steps': 10**6})
    if cpu: r = r.override(**{'quantization.compute_dtype': 'float32', 'training.optimizer': 'adamw_torch'})
    mcfg = AutoConfig.from_pretrained(ckpt_dir)
    L = mcfg.num_hidden_layers
    n = L if s['ckpt'] == -1 else s['ckpt']
    plan = None
    if s['ckpt'] == 'auto':
        free = s['free_gb'] if s['free_gb'] else (torch.cuda.mem_get_info()[0]/1e9 if torch.cuda.is_available() else 8.0)
        plan = fast.auto_fit(r, mcfg, free)
        r, n = plan.recipe, plan.checkpoint_layers
    t0 = time.time()
    model, tok = load_model(recipe=r, for_training=False)
    if s['prep'] == 'bf16': model = fast.prepare_bf16(model, n)
    else:  # the seed recipe's preparation: peft's prepare_model_for_kbit_training (float32 upcast), as in the baseline
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=(n == L))
        if 0 < n < L: fast.partial_checkpointing(model, n)
    torch.manual_seed(r.training.seed)
    model = get_peft_model(model, lora_config(r, model=model))
    patched = fast.apply_liger(model) if s['liger'] else 0
    compiled = fast.compile_layers(model) if s['compile'] else 0
    load_s = time.time() - t0
    b, T = r.training.batch_size, s['seq']
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, mcfg.vocab_size, (b * r.training.max_steps, T), generator=g)
    ds = Dataset.from_dict({'input_ids': ids.tolist()})
    times = []
    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            if torch.cuda.is_available(): torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
            times.append(time.perf_counter())
        def on_step_end(self, *a, **k):
            if torch.cuda.is_available(): torch.cuda.synchronize()
            times.append(time.perf_counter())
    with tempfile.TemporaryDirectory() as d:
        args = sft_config(r, d, **fast.sft_speed_kwargs(r), save_strategy='no', disable_tqdm=True, logging_steps=1)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[Timer()])
        res = trainer.train()
    step_s = [b_ - a_ for a_, b_ in zip(times, times[1:])]
    timed = step_s[s['warmup']:] or step_s
    med = statistics.median(timed)
    peak = torch.cuda.max_memory_allocated()/1e9 if torch.cuda.is_available() else None
    losses = [h['loss'] for h in trainer.state.log_history if 'loss' in h]
    try: est = estimate_gb(r, mcfg, n, s)
    except Exception as e: print('estimate failed:', repr(e), file=sys.stderr); est = float('nan')
    row = dict(name=name, batch=b, seq=T, r=s['r'], prep=s['prep'], liger=s['liger'], offload=s['offload'],
               dropout=s['dropout'], compile=bool(compiled),
               ckpt_layers=n, n_layers=L, tokens_per_s=round(b*T/med, 1), step_s=round(med, 4),
               step_all_s=[round(x, 4) for x in step_s], peak_gb=round(peak, 3) if peak else None,
               est_gb=round(est, 3), est_err_pct=round(100*(est - peak)/peak, 1) if peak and est == est else None,
               first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None,
               liger_modules=patched, load_s=round(load_s, 1), base=s['base'],
               plan=repr(plan) if plan else None)
    out.write_text(json.dumps(row))
    return row

def estimate_gb(r, mcfg, n:int, s:dict) -> float:
    "The estimator's peak-allocated GB (no framework overhead) for this configuration"
    from qlora_nb.memory import estimate_memory, recipe_estimate_kwargs
    kw = {**recipe_estimate_kwargs(r), 'upcast_norms': s['prep'] == 'peft', 'overhead_gb': 0.0,
          'checkpoint_layers': n, 'gradient_checkpointing': n != 0}
    return estimate_memory(mcfg, **kw).peak_allocated_gb

def versions():
    import importlib.metadata as md
    v = {}
    for p in ('torch', 'transformers', 'peft', 'trl', 'bitsandbytes', 'liger-kernel', 'accelerate', 'datasets'):
        try: v[p] = md.version(p)
        except md.PackageNotFoundError: v[p] = None
    try:
        import torch
        v['gpu'] = torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'
    except Exception: pass
    return v

def table(results:list) -> str:
    "Markdown table: configuration, tokens/s, peak GB, estimate, ratio to the seed configuration of the same shape"
    by = {r['name']: r for r in results if 'tokens_per_s' in r}
    lines = ['| configuration | batch × seq | ckpt layers | tokens/s | peak GB | est. GB | est. err % | speed vs seed | memory vs seed |',
             '|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in results:
        if 'tokens_per_s' not in r:
            lines.append(f"| {r['name']} | — | — | failed: {r.get('error', '')[:80]} | | | | | |"); continue
        base = by.get(r.get('base') or r['name'])
        sp = f"{r['tokens_per_s']/base['tokens_per_s']:.2f}×" if base else '—'
        mem = f"{r['peak_gb']/base['peak_gb']:.2f}×" if base and r['peak_gb'] and base['peak_gb'] else '—'
        pk = f"{r['peak_gb']:.2f}" if r['peak_gb'] else '—'
        lines.append(f"| {r['name']} | {r['batch']} × {r['seq']} | {r['ckpt_layers']}/{r['n_layers']} | {r['tokens_per_s']:,.0f} | "
                     f"{pk} | {r['est_gb']:.2f} | {r['est_err_pct'] if r['est_err_pct'] is not None else '—'} | {sp} | {mem} |")
    return '\n'.join(lines)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--configs', default=','.join(CONFIGS), help='comma-separated names: ' + ', '.join(CONFIGS))
    p.add_argument('--steps', type=int, default=None, help='timed steps per configuration (default: per configuration)')
    p.add_argument('--warmup', type=int, default=None, help='warm-up steps (default: per configuration)')
    p.add_argument('--out', default='bench_gpu.json', help='JSON file for the results (rewritten after each configuration)')
    p.add_argument('--ckpt', default=None, help='model directory (built when missing); default /tmp/qlora_bench_<size>')
    p.add_argument('--tiny', action='store_true', help='2-layer model instead of Mistral-7B (tests the script)')
    p.add_argument('--cpu', action='store_true', help='run on CPU (with --tiny): float32 compute, adamw_torch')
    p.add_argument('--no-liger', action='store_true', help='turn Liger off in every configuration (CPU tests)')
    p.add_argument('--timeout', type=int, default=150, help='seconds per configuration process')
    p.add_argument('--one', default=None, help=argparse.SUPPRESS)
    p.add_argument('--result', default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.cpu: os.environ['CUDA_VISIBLE_DEVICES'] = ''
    ckpt = Path(a.ckpt or f"/tmp/qlora_bench_{'tiny' if a.tiny else 'mistral7b'}")
    if a.one:
        if a.no_liger: CONFIGS[a.one]['liger'] = False
        run_one(a.one, str(ckpt), Path(a.result), a.cpu, a.steps, a.warmup); return
    names = [n.strip() for n in a.configs.split(',') if n.strip()]
    bad = [n for n in names if n not in CONFIGS]
    if bad: sys.exit(f"Unknown configuration(s) {bad}. Choose from: {', '.join(CONFIGS)}")
    out = Path(a.out)
    doc = dict(date=datetime.date.today().isoformat(), versions=versions(), model='tiny' if a.tiny else 'Mistral-7B-v0.1 (random weights)',
               recipe='NF4 + double quant, bf16 compute, LoRA on q,k,v,o,gate,up,down (alpha 2r, dropout per row), paged_adamw_8bit, sdpa',
               results=[])
    if not (ckpt/'config.json').exists():
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from scripts.bench_gpu import build_checkpoint; from pathlib import Path; "
                f"print('built in', round(build_checkpoint(Path({str(ckpt)!r}), {a.tiny}, {a.cpu}), 1), 's', flush=True)")
        subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)
    for name in names:
        res = Path(tempfile.mkdtemp())/'r.json'
        cmd = [sys.executable, __file__, '--one', name, '--result', str(res), '--ckpt', str(ckpt)]
        if a.steps: cmd += ['--steps', str(a.steps)]
        if a.warmup is not None: cmd += ['--warmup', str(a.warmup)]
        if a.tiny: cmd.append('--tiny')
        if a.cpu: cmd.append('--cpu')
        if a.no_liger: cmd.append('--no-liger')
        t0 = time.time()
        try:
            pr = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, cwd=ROOT)
            if res.exists(): row = json.loads(res.read_text())
            else: row = dict(name=name, error=(pr.stderr or pr.stdout).strip().splitlines()[-1][:300] if (pr.stderr or pr.stdout).strip() else f'exit {pr.returncode}',
                             log_tail=(pr.stderr or '')[-1500:])
        except subprocess.TimeoutExpired: row = dict(name=name, error=f'timeout after {a.timeout}s')
        row['wall_s'] = round(time.time() - t0, 1)
        doc['results'].append(row)
        out.write_text(json.dumps(doc, indent=1))
        print(name, {k: row.get(k) for k in ('tokens_per_s', 'peak_gb', 'est_gb', 'est_err_pct', 'ckpt_layers', 'last_loss', 'wall_s', 'error')}, flush=True)
    print(table(doc['results']))

if __name__ == '__main__': main()
