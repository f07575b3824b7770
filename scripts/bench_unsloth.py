#!/usr/bin/env python
"""Benchmark qlora_nb's Unsloth backend (`model.backend = unsloth`) on a GPU, the way scripts/bench_gpu.py benchmarks the
transformers backend: Mistral-7B-v0.1 architecture (random weights) loaded through `qlora_nb.unsloth.load_unsloth` in 4 bits,
LoRA r=16 (alpha 32) on the seven projections, trl's SFTTrainer built from `qlora_nb.train.sft_config` with paged AdamW
8-bit and bf16, one process per configuration (2 warm-up + 5 timed steps; tokens/s = batch·seq / median step time;
peak = torch.cuda.max_memory_allocated() after reset_peak_memory_stats() at train begin).

    python scripts/bench_unsloth.py --out bench_unsloth.json                 # unsloth_b4, unsloth_b1
    python scripts/bench_unsloth.py --configs unsloth_b4,unsloth_b4_drop05   # a subset / other configurations
    python scripts/bench_unsloth.py --finetune-toy                           # qlora_nb.train.finetune end to end (toy)
    python scripts/bench_unsloth.py --tiny --configs unsloth_b1              # 2-layer model: tests this script on a GPU
    python scripts/bench_unsloth.py --prepare-only --tiny --cpu              # CPU: build the checkpoint + pad copy only

Runs in the Unsloth environment (unsloth, unsloth_zoo, trl<=1.15, datasets<5 from .whl-unsloth, bitsandbytes from .whl):
Unsloth needs a CUDA GPU, so `import unsloth` happens only inside the worker processes. Each worker imports unsloth
before transformers/trl/peft (Unsloth patches them at import, and replaces trl.SFTTrainer/SFTConfig by its own).

The checkpoint from bench_gpu.build_checkpoint has `<unk>` but no pad token. Unsloth repairs a missing pad token while
it loads (unsloth_zoo.pad_token.fix_pad_token: a reserved/pad-named token, else unk, else it adds one and refuses the
tokenizer), before qlora_nb's setup_tokenizer can act. So this script benchmarks a sibling directory
(`<ckpt>_padded`: symlinks to the weights and config, the tokenizer re-saved with pad_token = `<unk>`) — the same pad
setup_tokenizer and Unsloth's own fallback pick — and leaves bench_gpu.py's checkpoint untouched."""
import argparse, datetime, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from scripts.bench_gpu import versions as _versions  # noqa: E402  (stdlib-only module: safe without a GPU)

# name -> settings; defaults: batch 4, seq 2048, r 16 (alpha 2r), dropout 0 (Unsloth's default), every layer checkpointed
# (Unsloth's 'unsloth' offloaded checkpointing). `base`: the configuration this one is compared with.
CONFIGS = {
    'unsloth_b4':        dict(batch=4),
    'unsloth_b1':        dict(batch=1),
    'unsloth_b4_drop05': dict(batch=4, dropout=0.05, base='unsloth_b4'),  # bench_gpu's seed uses dropout 0.05
    'unsloth_b4_nockpt': dict(batch=4, ckpt=False, base='unsloth_b4'),
    # bench_gpu.py's real-length instruction rows (log-normal, median ~200 tokens), packed by trl, loss on completions
    'unsloth_real_packed': dict(batch=4, data='real', packing=True),
    'unsloth_real_unpacked': dict(batch=4, data='real', packing=False, base='unsloth_real_packed'),
}
DEFAULT_CONFIGS = 'unsloth_b4,unsloth_b1'
DEFAULTS = dict(batch=4, seq=2048, r=16, dropout=0.0, ckpt=True, steps=5, warmup=2, base=None, data='syn', packing=False)
# toy finetune variants: compute dtype, and whether qlora_nb.train (hence trl) is imported before unsloth — what a user
# script that does `from qlora_nb.train import finetune` gets today (trl's own SFTTrainer, Unsloth's import warning)
TOY = {
    'bf16':      dict(dtype='bfloat16', late=False),
    'bf16_late': dict(dtype='bfloat16', late=True),
    'fp32':      dict(dtype='float32', late=False),  # the toy recipe's own dtype; Unsloth skips its fused LoRA kernels
}
DEFAULT_TOY = 'bf16,bf16_late'
TOKENIZER_FILES = {'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja',
                   'tokenizer.model', 'added_tokens.json', 'vocab.json', 'merges.txt'}
ENV = {'HF_HUB_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'UNSLOTH_DISABLE_STATISTICS': '1', 'HF_DATASETS_OFFLINE': '1',
       'TOKENIZERS_PARALLELISM': 'false', 'UNSLOTH_COMPILE_LOCATION': '/tmp/unsloth_compiled_cache'}

def padded_checkpoint(ckpt:Path) -> Path:
    "`ckpt` itself when its tokenizer has a pad token, else `<ckpt>_padded`: weights symlinked, tokenizer with pad = unk"
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(ckpt)
    if tok.pad_token is not None: return ckpt
    if tok.unk_token is None or tok.unk_token_id == tok.eos_token_id:
        raise SystemExit(f"{ckpt}: the tokenizer has no pad token and no usable unk token; Unsloth would refuse it.")
    dst = ckpt.with_name(ckpt.name + '_padded')
    dst.mkdir(exist_ok=True)
    for p in ckpt.iterdir():
        link = dst/p.name
        if p.name in TOKENIZER_FILES or link.exists() or link.is_symlink(): continue
        link.symlink_to(p.resolve())
    tok.pad_token = tok.unk_token  # already in the vocabulary (id 0): no new row, no embedding resize
    tok.save_pretrained(dst)
    return dst

def _env():
    for k, v in ENV.items(): os.environ.setdefault(k, v)

def run_one(name:str, ckpt_dir:str, out:Path, steps:int|None, warmup:int|None):
    "Train one configuration through load_unsloth + SFTTrainer(sft_config(...)) and write its result as JSON to `out`"
    _env()
    import unsloth  # noqa: F401  first: patches transformers/peft/trl (trl.SFTTrainer -> UnslothSFTTrainer)
    import torch, trl
    from datasets import Dataset
    from transformers import AutoConfig, TrainerCallback
    from qlora_nb.recipe import Recipe
    from qlora_nb.train import sft_config
    from qlora_nb.unsloth import load_unsloth
    s = {**DEFAULTS, **CONFIGS[name]}
    if steps: s['steps'] = steps
    if warmup is not None: s['warmup'] = warmup
    r = Recipe().override(**{'model.name_or_path': ckpt_dir, 'model.backend': 'unsloth', 'model.attn_implementation': 'sdpa',
        'data.max_length': s['seq'], 'data.completion_only': s['data'] == 'real', 'data.packing': s['packing'], 'lora.r': s['r'], 'lora.alpha': 2*s['r'],
        'lora.dropout': s['dropout'], 'training.batch_size': s['batch'], 'training.grad_accum': 1,
        'training.max_steps': s['warmup'] + s['steps'], 'training.warmup': 0, 'training.gradient_checkpointing': s['ckpt'],
        'training.logging_steps': 10**6, 'training.save_steps': 10**6})
    mcfg = AutoConfig.from_pretrained(ckpt_dir)
    L = mcfg.num_hidden_layers
    t0 = time.time()
    model, tok = load_unsloth(r)
    load_s = time.time() - t0
    b, T = r.training.batch_size, s['seq']
    g = torch.Generator().manual_seed(0)
    if s['data'] == 'real':
        from scripts.bench_gpu import real_length_rows
        ds = Dataset.from_list(real_length_rows(600, mcfg.vocab_size, max_len=T))
    else:
        ids = torch.randint(3, mcfg.vocab_size, (b * r.training.max_steps, T), generator=g)  # no pad/bos/eos ids: no padding
        ds = Dataset.from_dict({'input_ids': ids.tolist()})
    times = []
    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
            times.append(time.perf_counter())
        def on_step_end(self, *a, **k):
            torch.cuda.synchronize()
            times.append(time.perf_counter())
    with tempfile.TemporaryDirectory() as d:
        args = sft_config(r, d, save_strategy='no', logging_steps=1)  # sft_config sets every speed switch from the recipe
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[Timer()])
        trainer.train()
    step_s = [b_ - a_ for a_, b_ in zip(times, times[1:])]
    timed = step_s[s['warmup']:] or step_s
    med = statistics.median(timed)
    # non-padding tokens per step from trl's `num_tokens` log (real data: packs and rows vary); fixed rows: b*T
    seen = {h['step']: h['num_tokens'] for h in trainer.state.log_history if 'num_tokens' in h}
    tokens = [seen.get(i + 1, 0) - seen.get(i, 0) for i in range(len(step_s))]
    tok_s = (sum(tokens[s['warmup']:]) / sum(timed)) if s['data'] == 'real' and seen else b*T/med
    peak = torch.cuda.max_memory_allocated()/1e9
    losses = [h['loss'] for h in trainer.state.log_history if 'loss' in h]
    n = L if s['ckpt'] else 0
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    row = dict(name=name, backend='unsloth', batch=b, seq=T, r=s['r'], dropout=s['dropout'], ckpt_layers=n, n_layers=L,
               data=s['data'], packing=s['packing'], tokens=tokens, tokens_per_s=round(tok_s, 1), step_s=round(med, 4), step_all_s=[round(x, 4) for x in step_s],
               peak_gb=round(peak, 3),
               first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None,
               load_s=round(load_s, 1), base=s['base'], trainable_params=trainable,
               trainer_class=f"{type(trainer).__module__}.{type(trainer).__name__}",
               unsloth_gradient_checkpointing=repr(getattr(model, '_unsloth_gradient_checkpointing', None)),
               pad_token=tok.pad_token, pad_token_id=tok.pad_token_id, bf16=args.bf16, optim=str(args.optim))
    out.write_text(json.dumps(row))
    return row

def run_toy(variant:str, out:Path, steps:int):
    "qlora_nb.train.finetune end to end on the toy recipe with model.backend = unsloth; write listing + summary to `out`"
    _env()
    v = TOY[variant]
    if v['late']: import qlora_nb.train  # noqa: F401  trl imported before unsloth, as in a user's script
    import unsloth  # noqa: F401
    import trl
    from qlora_nb.recipe import toy_recipe
    from qlora_nb.train import finetune, read_summary
    with tempfile.TemporaryDirectory(prefix='toy_unsloth_') as d:
        r = toy_recipe(**{'model.backend': 'unsloth', 'training.max_steps': steps, 'output.dir': d,
                          'quantization.compute_dtype': v['dtype'], 'training.logging_steps': 5})
        t0 = time.time()
        run = finetune(r)
        wall = time.time() - t0
        listing = {p.relative_to(run).as_posix(): p.stat().st_size for p in sorted(run.rglob('*')) if p.is_file()}
        summary = read_summary(run)
    import qlora_nb.train as qt
    row = dict(name=f'toy_{variant}', dtype=v['dtype'], late_import=v['late'], finetune_s=round(wall, 1),
               trainer_class_used=f"{qt.trl.SFTTrainer.__module__}.{qt.trl.SFTTrainer.__name__}",  # finetune looks it up at call time
               trl_SFTTrainer_now=f"{trl.SFTTrainer.__module__}.{trl.SFTTrainer.__name__}",
               files=listing, summary=summary)
    out.write_text(json.dumps(row, default=str))
    return row

def versions():
    import importlib.metadata as md
    v = _versions()
    for p in ('unsloth', 'unsloth_zoo', 'xformers', 'triton'):
        try: v[p] = md.version(p)
        except md.PackageNotFoundError: v[p] = None
    return v

def table(results:list) -> str:
    "Markdown table: configuration, tokens/s, peak GB, ratio to its base configuration"
    by = {r['name']: r for r in results if 'tokens_per_s' in r}
    lines = ['| configuration | batch × seq | dropout | ckpt | tokens/s | peak GB | speed vs base | memory vs base |',
             '|---|---|---:|---|---:|---:|---:|---:|']
    for r in results:
        if 'tokens_per_s' not in r:
            lines.append(f"| {r['name']} | — | — | — | failed: {r.get('error', '')[:80]} | | | |"); continue
        base = by.get(r.get('base') or r['name'])
        sp = f"{r['tokens_per_s']/base['tokens_per_s']:.2f}×" if base else '—'
        mem = f"{r['peak_gb']/base['peak_gb']:.2f}×" if base else '—'
        lines.append(f"| {r['name']} | {r['batch']} × {r['seq']} | {r['dropout']} | {r['ckpt_layers']}/{r['n_layers']} | "
                     f"{r['tokens_per_s']:,.0f} | {r['peak_gb']:.2f} | {sp} | {mem} |")
    return '\n'.join(lines)

def _launch(name:str, cmd:list, res:Path, timeout:int, logdir:Path) -> dict:
    "Run one worker process (output to a log file), return its JSON row or an error row with the traceback tail"
    log = logdir/f'{name}.log'
    t0 = time.time()
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in ENV.items()}}
    try:
        with open(log, 'w') as f: pr = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT, env=env)
        rc = pr.returncode
    except subprocess.TimeoutExpired: rc = f'timeout after {timeout}s'
    tail = log.read_text(errors='replace')[-4000:] if log.exists() else ''
    if res.exists() and rc == 0: row = json.loads(res.read_text())
    else:
        lines = [l for l in tail.strip().splitlines() if l.strip()]
        row = dict(name=name, error=(lines[-1][:300] if lines else '') if isinstance(rc, int) else rc, returncode=rc,
                   log_tail=tail)
        print(f"\n!!!!! {name} FAILED ({rc}); log {log}; last output:\n{tail}\n!!!!! end of {name}\n", flush=True)
    row['wall_s'] = round(time.time() - t0, 1)
    row['log'] = str(log)
    return row

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--configs', default=DEFAULT_CONFIGS, help=f'comma-separated names (default {DEFAULT_CONFIGS}): ' + ', '.join(CONFIGS))
    p.add_argument('--finetune-toy', action='store_true', help='run qlora_nb.train.finetune on the toy recipe instead of the benchmark')
    p.add_argument('--toy-variants', default=DEFAULT_TOY, help=f'with --finetune-toy (default {DEFAULT_TOY}): ' + ', '.join(TOY))
    p.add_argument('--toy-steps', type=int, default=30, help='optimizer steps of the toy finetune')
    p.add_argument('--steps', type=int, default=None, help='timed steps per configuration (default 5)')
    p.add_argument('--warmup', type=int, default=None, help='warm-up steps (default 2)')
    p.add_argument('--out', default='bench_unsloth.json', help='JSON file for the results (rewritten after each configuration)')
    p.add_argument('--ckpt', default=None, help='model directory (built when missing); default /tmp/qlora_bench_<size>')
    p.add_argument('--tiny', action='store_true', help="bench_gpu's 2-layer model instead of Mistral-7B (tests the script)")
    p.add_argument('--cpu', action='store_true', help='with --prepare-only: build the checkpoint on CPU')
    p.add_argument('--prepare-only', action='store_true', help='build the checkpoint and its padded copy, print the plan, stop')
    p.add_argument('--timeout', type=int, default=300, help='seconds per configuration process (Unsloth compiles on first use)')
    p.add_argument('--one', default=None, help=argparse.SUPPRESS)
    p.add_argument('--toy-one', default=None, help=argparse.SUPPRESS)
    p.add_argument('--result', default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one: run_one(a.one, a.ckpt, Path(a.result), a.steps, a.warmup); return
    if a.toy_one: run_toy(a.toy_one, Path(a.result), a.toy_steps); return
    catalog, spec = (TOY, a.toy_variants) if a.finetune_toy else (CONFIGS, a.configs)
    names = [n.strip() for n in spec.split(',') if n.strip()]
    bad = [n for n in names if n not in catalog]
    if bad: sys.exit(f"Unknown name(s) {bad}. Choose from: {', '.join(catalog)}")
    out, logdir = Path(a.out), Path(tempfile.mkdtemp(prefix='bench_unsloth_logs_'))
    doc = dict(date=datetime.date.today().isoformat(), versions=versions(), env={k: os.environ.get(k, v) for k, v in ENV.items()},
               results=[])
    if a.finetune_toy:
        doc.update(mode='finetune-toy', recipe="toy_recipe() + model.backend=unsloth, training.max_steps=%d" % a.toy_steps)
        cmds = {n: [sys.executable, __file__, '--toy-one', n, '--toy-steps', str(a.toy_steps)] for n in names}
    else:
        ckpt = Path(a.ckpt or f"/tmp/qlora_bench_{'tiny' if a.tiny else 'mistral7b'}")
        if not (ckpt/'config.json').exists():
            code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from scripts.bench_gpu import build_checkpoint; from pathlib import Path; "
                    f"print('built in', round(build_checkpoint(Path({str(ckpt)!r}), {a.tiny}, {a.cpu}), 1), 's', flush=True)")
            subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)
        run_dir = padded_checkpoint(ckpt)
        doc.update(mode='bench', model='tiny' if a.tiny else 'Mistral-7B-v0.1 (random weights)', checkpoint=str(run_dir),
                   recipe='backend unsloth: NF4 + double quant, bf16, LoRA on q,k,v,o,gate,up,down (alpha 2r), '
                          "paged_adamw_8bit, Unsloth attention, 'unsloth' gradient checkpointing")
        cmds = {}
        for n in names:
            cmds[n] = [sys.executable, __file__, '--one', n, '--ckpt', str(run_dir)]
            if a.steps: cmds[n] += ['--steps', str(a.steps)]
            if a.warmup is not None: cmds[n] += ['--warmup', str(a.warmup)]
    if a.prepare_only:
        print(json.dumps({k: v for k, v in doc.items() if k != 'results'}, indent=1))
        for n, c in cmds.items(): print(n, '->', ' '.join(c[1:]))
        return
    failed = 0
    for n in names:
        res = Path(tempfile.mkdtemp())/'r.json'
        row = _launch(n, cmds[n] + ['--result', str(res)], res, a.timeout, logdir)
        failed += 'error' in row
        doc['results'].append(row)
        out.write_text(json.dumps(doc, indent=1, default=str))
        if a.finetune_toy and 'error' not in row:
            print(f"== {n}: finetune {row['finetune_s']} s, trainer {row['trainer_class_used']}")
            print('   run directory:', *(f"{k} ({v:,} B)" for k, v in row['files'].items()), sep='\n     ')
            print('   summary:', json.dumps({k: v for k, v in row['summary'].items() if k != 'samples'}, default=str))
            print('   samples:', json.dumps(row['summary'].get('samples', [])[-1:], default=str), flush=True)
        elif not a.finetune_toy:
            print(n, {k: row.get(k) for k in ('tokens_per_s', 'peak_gb', 'step_s', 'first_loss', 'last_loss', 'load_s',
                                              'trainer_class', 'wall_s', 'error')}, flush=True)
    if not a.finetune_toy: print(table(doc['results']))
    print(f"results: {out}  logs: {logdir}")
    if failed: sys.exit(f"{failed} of {len(names)} run(s) failed (tracebacks above and in {logdir})")

if __name__ == '__main__': main()
