#!/usr/bin/env python
"""Benchmark qlora_nb on a GPU through the user path (`qlora_nb.train.finetune`): Mistral-7B-v0.1 architecture (random
weights) loaded in 4 bits by `load_model`, LoRA r=16 on the seven projections, trl's SFTTrainer from `sft_config`, paged
AdamW 8-bit, one process per configuration. Every configuration is a set of recipe overrides (the keys of settings.ini).

    python scripts/bench_gpu.py --out nbs/bench/packing.json                 # every configuration
    python scripts/bench_gpu.py --configs real_packed_fast,real_unpacked_fast # a subset
    python scripts/bench_gpu.py --tiny --cpu --configs cpu_packed,cpu_unpacked # a 2-layer model on CPU: tests the script

Data, built here (nothing is downloaded): `real` = instruction rows whose lengths follow real instruction data (log-normal,
median ~200 tokens, a long tail cut at 2,048; prompt 10-50% of each row); `syn2048` = rows of exactly 2,048 tokens.
tokens/s = non-padding tokens (trl's `num_tokens`) of the timed steps / their time (after warm-up steps); peak =
torch.cuda.max_memory_allocated() over training; `est_gb` = `estimate_memory` for the recipe at the largest micro-batch."""
import argparse, bisect, datetime, importlib, json, math, os, random, statistics, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = {}   # the seed recipe: settings.ini's quality settings (dropout 0.05, fp32 upcast, no Liger, no offloading)
FAST = {'training.upcast_norms': False, 'training.liger': True, 'training.activation_offloading': True}
PACK, NOPACK = {'data.packing': True}, {'data.packing': False}
TF = {**FAST, **PACK, 'lora.dropout': 0.0, 'training.optimizer': 'adamw_torch_fused'}   # the fastest rows: no dropout, fused AdamW
# name -> (data, recipe overrides, base: the configuration it is compared with)
CONFIGS = {
    'real_packed_fast':        ('real', {**FAST, **PACK}, 'real_unpacked_fast'),                 # attention: auto
    'real_packed_fast_flex':   ('real', {**FAST, **PACK, 'model.attn_implementation': 'flex_attention'}, 'real_packed_fast_sdpa'),
    'real_packed_fast_sdpa':   ('real', {**FAST, **PACK, 'model.attn_implementation': 'sdpa'}, 'real_unpacked_fast'),
    'real_unpacked_fast':      ('real', {**FAST, **NOPACK}, None),
    'real_packed_seed':        ('real', {**SEED, **PACK}, 'real_unpacked_seed'),
    'real_unpacked_seed':      ('real', {**SEED, **NOPACK}, None),
    'syn2048_packed_fast':     ('syn2048', {**FAST, **PACK}, 'syn2048_unpacked_fast'),
    'syn2048_unpacked_fast':   ('syn2048', {**FAST, **NOPACK}, None),
    'real_packed_fast_d0':     ('real', {**FAST, **PACK, 'lora.dropout': 0.0}, 'real_packed_fast_d0_peft'),
    'real_packed_fast_d0_peft': ('real', {**FAST, **PACK, 'lora.dropout': 0.0, 'training.fused_lora': False}, None),  # peft's LoRA forward
    'real_packed_fast_d0_a8':  ('real', {**FAST, **PACK, 'lora.dropout': 0.0, 'training.optimizer': 'adamw_8bit'}, 'real_packed_fast_d0'),
    'real_packed_fast_d0_tf':  ('real', TF, 'real_packed_fast_d0'),
    'real_packed_fast_d0_nockpt': ('real', {**FAST, **PACK, 'lora.dropout': 0.0, 'training.gradient_checkpointing': False,
                                            'training.activation_offloading': False}, 'real_packed_fast_d0'),  # the ceiling without recompute
    'real_packed_fast_d0_b5':  ('real', {**FAST, **PACK, 'lora.dropout': 0.0, 'training.batch_size': 5}, 'real_packed_fast_d0'),
    'syn2048_packed_fast_d0':  ('syn2048', {**FAST, **PACK, 'lora.dropout': 0.0}, 'syn2048_packed_fast'),
    'syn2048_packed_fast_d0_tf': ('syn2048', TF, 'syn2048_packed_fast_d0'),
    'syn2048_packed_fast_d0_tf_nooff': ('syn2048', {**TF, 'training.activation_offloading': False}, 'syn2048_packed_fast_d0_tf'),
    # the shipped recipe's 4 micro-batches per optimizer step (the rows above take one)
    'real_packed_fast_d0_tf_ga4': ('real', {**TF, 'training.grad_accum': 4}, 'real_packed_fast_d0_tf'),
    'syn2048_packed_fast_d0_tf_ga4': ('syn2048', {**TF, 'training.grad_accum': 4}, 'syn2048_packed_fast_d0_tf'),
    # two layers without recompute, their activations offloaded to CPU memory like the checkpoint inputs
    'real_packed_fast_d0_tf_ck30': ('real', {**TF, 'training.checkpoint_layers': 30}, 'real_packed_fast_d0_tf'),
    'real_packed_compile_d0':  ('real', {'training.upcast_norms': False, 'training.activation_offloading': True, **PACK,
                                         'training.compile': True, 'lora.dropout': 0.0}, 'real_packed_fast'),
    'seed_b1':                 ('syn2048', {**SEED, **NOPACK, 'training.batch_size': 1}, None),   # one 2,048-token row per step
    'fast_d0_b1':              ('syn2048', {**FAST, **NOPACK, 'lora.dropout': 0.0, 'training.batch_size': 1}, 'seed_b1'),
    'cpu_packed':              ('real', {**PACK, 'model.attn_implementation': 'sdpa'}, 'cpu_unpacked'),
    'cpu_unpacked':            ('real', {**NOPACK}, None),
}
# baselines in the same command: any configuration's name + one of these suffixes (`real_packed_fast_d0_tf_addmm`) runs
# that configuration with one library switch patched, in its own process only (module, attribute, value)
BASELINES = {
    '_addmm': ('qlora_nb.model', '_autograd_fusable', lambda *a: False),          # LoRA as one addmm, autograd's backward (before lora_linear)
    '_trlcache': ('qlora_nb.train', 'keep_allocator_cache', lambda trainer: False), # trl's offloading empties the CUDA cache each micro-batch
    '_repkv': ('qlora_nb.packing', 'REPEAT_KV', True),                             # K/V heads repeated before the varlen kernel
    # transformers' per-micro-batch NaN check, parameter walk and token read-back (before fewer_host_syncs)
    '_syncs': ('qlora_nb.train', 'fewer_host_syncs', lambda trainer: setattr(trainer.args, 'logging_nan_inf_filter', True)),
    '_exitsync': ('qlora_nb.train', 'offload_without_host_sync', lambda trainer: False),  # trl's offloading waits for the GPU at each micro-batch's end
    '_fa2': ('qlora_nb.packing', 'DENSE_CUDNN', False),                           # equal-length examples through varlen's flash kernel too
    '_inplace': ('qlora_nb.model', 'LORA_ADD', 'inplace'),                        # LoRA's matmul accumulates onto the base output
    '_copy': ('qlora_nb.model', 'LORA_ADD', 'copy')}                              # torch.addmm(base(x), h, Bᵀ): a copy of the base output first

def config(name:str) -> tuple|None:
    "`(data, overrides, base, baseline suffix or '')` of a configuration name, a baseline's being its configuration's; None if unknown"
    if name in CONFIGS: return (*CONFIGS[name], '')
    suffix = next((s for s in BASELINES if name.endswith(s) and name[:-len(s)] in CONFIGS), None)
    if suffix is None: return None
    data, over, _ = CONFIGS[name[:-len(suffix)]]
    return data, over, None, suffix
DEFAULT = [n for n in CONFIGS if not n.startswith('cpu_') and not n.endswith('_b1')]

MISTRAL_7B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=32000, max_position_embeddings=32768, tie_word_embeddings=False,
                  rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=None)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=512, max_position_embeddings=4096, tie_word_embeddings=False)

def build_checkpoint(path:Path, tiny:bool, cpu:bool, config:dict|None=None):
    "Save a Mistral model (or a Llama of `config`) with random weights and a word-level tokenizer (`w3` ... one token per word) to `path`"
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast
    if config: cfg, cls = LlamaConfig(**config, bos_token_id=1, eos_token_id=2), LlamaForCausalLM
    else: cfg, cls = MistralConfig(**(TINY if tiny else MISTRAL_7B), bos_token_id=1, eos_token_id=2), MistralForCausalLM
    t0 = time.time()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device('cpu' if cpu else 'cuda'): model = cls(cfg)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(path, safe_serialization=True)
    del model
    if not cpu: torch.cuda.empty_cache()
    vocab = {'<unk>': 0, '<s>': 1, '</s>': 2, **{f'w{i}': i for i in range(3, cfg.vocab_size)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token='<unk>')); tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token='<unk>', bos_token='<s>', eos_token='</s>').save_pretrained(path)
    return time.time() - t0

def real_length_rows(n:int, vocab:int, median:int=200, sigma:float=0.8, max_len:int=2048, seed:int=0) -> list:
    "`n` prompt/completion rows of random words whose token lengths follow instruction data: log-normal, median `median`"
    rng = random.Random(seed)
    words = lambda k: ' '.join(f'w{rng.randrange(3, vocab)}' for _ in range(k))
    rows = []
    for _ in range(n):
        total = min(max_len - 1, max(8, round(median * math.exp(rng.gauss(0, sigma)))))   # -1: room for the EOS
        p = max(4, round(total * rng.uniform(0.1, 0.5)))
        rows.append(dict(prompt=words(p), completion=' ' + words(total - p)))   # ' ': the word boundary stays a token boundary
    return rows

def full_length_rows(n:int, vocab:int, length:int=2048, seed:int=0) -> list:
    "`n` rows of exactly `length` tokens with the EOS (a 256-token prompt)"
    rng = random.Random(seed)
    words = lambda k: ' '.join(f'w{rng.randrange(3, vocab)}' for _ in range(k))
    return [dict(prompt=words(256), completion=' ' + words(length - 257)) for _ in range(n)]

def run_one(name:str, ckpt_dir:str, out:Path, cpu:bool, steps:int, warmup:int, profile:bool):
    "Train one configuration through `finetune` and write its result (tokens/s, peak GB, estimate) as JSON to `out`"
    import torch
    from transformers import AutoConfig, TrainerCallback
    from qlora_nb.recipe import Recipe
    from qlora_nb.settings import resolve
    from qlora_nb.train import finetune
    data, over, base, patched = config(name)
    if patched:
        mod, attr, value = BASELINES[patched]
        setattr(importlib.import_module(mod), attr, value)
    mcfg = AutoConfig.from_pretrained(ckpt_dir)
    b = 1 if cpu else 4
    overrides = {'model.name_or_path': ckpt_dir, 'data.max_length': 2048, 'training.batch_size': b, 'training.grad_accum': 1,
                 'training.max_steps': warmup + steps, 'training.warmup': 0, 'training.logging_steps': 1,
                 'training.save_steps': 10**6, 'output.dir': tempfile.mkdtemp(), 'output.name': name, **over}
    if cpu: overrides.update({'quantization.compute_dtype': 'float32', 'training.optimizer': 'adamw_torch', 'data.max_length': 256,
                              'training.liger': False, 'training.activation_offloading': False})
    r = Recipe().override(**overrides)
    b = r.training.batch_size
    n = 600 if data == 'real' else b * r.training.grad_accum * (warmup + steps)
    rows = (real_length_rows(n, mcfg.vocab_size, max_len=r.data.max_length) if data == 'real'
            else full_length_rows(n, mcfg.vocab_size, r.data.max_length))
    times, state, prof, padded, mem = [], {}, {}, [], []
    class Timer(TrainerCallback):
        def on_train_begin(self, args, st, control, model=None, **k):
            # tokens the model really holds per micro-batch, padding included (trl's num_tokens counts no padding)
            model.get_input_embeddings().register_forward_hook(lambda m, i, o: padded.append(i[0].numel()))
            if torch.cuda.is_available(): torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
            times.append(time.perf_counter())
        def on_step_begin(self, args, st, control, **k):
            if profile and st.global_step == warmup + steps - 1:
                prof['p'] = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA])
                prof['p'].__enter__()
        def on_step_end(self, args, st, control, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                mem.append((round(torch.cuda.memory_allocated()/1e9, 3), round(torch.cuda.memory_reserved()/1e9, 3)))
            times.append(time.perf_counter())
            if 'p' in prof and st.global_step == warmup + steps:
                prof['p'].__exit__(None, None, None); times[-1] = None   # the profiled step is not timed
        def on_train_end(self, args, st, control, **k): state['log'] = list(st.log_history)
    t0 = time.time()
    finetune(r, data=rows, callbacks=[Timer()], overwrite=True)
    wall = time.time() - t0
    step_s = [(b_ - a_) if a_ and b_ else None for a_, b_ in zip(times, times[1:])]
    seen = {h['step']: h['num_tokens'] for h in state['log'] if 'num_tokens' in h}
    tokens = [seen.get(i + 1, 0) - seen.get(i, 0) for i in range(len(step_s))]
    timed = [(t, s) for t, s in list(zip(tokens, step_s))[warmup:] if s]
    tok_s = sum(t for t, _ in timed) / sum(s for _, s in timed)
    peak = torch.cuda.max_memory_allocated()/1e9 if torch.cuda.is_available() else None
    losses = [h['loss'] for h in state['log'] if 'loss' in h]
    row = dict(name=name, data=data, recipe={k: v for k, v in over.items()}, base=base, baseline=patched or None,   # the BASELINES switch patched in this row
               allocated_reserved_gb=mem,
               attn=resolve(r).attn_implementation, batch=b, max_length=r.data.max_length,
               tokens_per_s=round(tok_s, 1), tokens_per_step=round(statistics.mean(t for t, _ in timed)),
               tokens_max=max(padded) if padded else max(tokens), step_s=[round(s, 4) if s else None for s in step_s], tokens=tokens,
               peak_gb=round(peak, 3) if peak else None, first_loss=losses[0] if losses else None,
               last_loss=losses[-1] if losses else None, losses=[round(l, 4) for l in losses], wall_s=round(wall, 1))
    try:
        from qlora_nb.memory import bench_estimate
        est = bench_estimate(row, mcfg.to_dict()).peak_allocated_gb
        row.update(est_gb=round(est, 3), est_err_pct=round(100*(est - peak)/peak, 1) if peak else None)
    except Exception as e: print('estimate failed:', repr(e), file=sys.stderr)
    if 'p' in prof:
        try:
            ka = prof['p'].key_averages()
            top = sorted(ka, key=lambda e: -e.self_device_time_total)[:25]
            row['profile'] = [dict(op=e.key[:80], self_cuda_ms=round(e.self_device_time_total/1e3, 2), calls=e.count) for e in top]
            row['profile_total_ms'] = round(sum(e.self_device_time_total for e in ka)/1e3, 1)
            trace = Path(tempfile.mkdtemp())/'trace.json'
            prof['p'].export_chrome_trace(str(trace))
            row['gaps'] = gpu_gaps(json.loads(trace.read_text())['traceEvents'])
        except Exception as e: row['profile_error'] = repr(e)
    out.write_text(json.dumps(row))
    return row

def gpu_gaps(events:list, top:int=15, min_us:float=20) -> dict:
    "Where the compute stream of a profiled step waits: its busy time (union of its kernels) against the step's span, and the longest gaps with the kernels around them and the CPU ops that began in them"
    kern = [e for e in events if e.get('ph') == 'X' and e.get('cat') in ('kernel', 'gpu_memcpy', 'gpu_memset')]
    load = {}
    for e in kern: load[e['args'].get('stream')] = load.get(e['args'].get('stream'), 0) + e['dur']
    s0 = max(load, key=load.get)   # the compute stream: the one with the most kernel time
    ks = sorted((e['ts'], e['ts'] + e['dur'], e['name']) for e in kern if e['args'].get('stream') == s0)
    gaps, busy, (cs, ce, cn) = [], 0.0, ks[0]
    for s, e, n in ks[1:]:
        if s > ce:
            if s - ce >= min_us: gaps.append((s - ce, ce, s, cn, n))
            busy += ce - cs; cs, ce = s, e
        elif e > ce: ce = e
        cn = n if e >= ce else cn
    busy += ce - cs
    t0, span = ks[0][0], max(e for _, e, _ in ks) - ks[0][0]
    cpu = sorted((e['ts'], e['name']) for e in events if e.get('ph') == 'X' and e.get('cat') in ('cpu_op', 'cuda_runtime', 'cuda_driver'))
    starts = [t for t, _ in cpu]
    def inside(a, b):
        names = {}
        for t, n in cpu[bisect.bisect_left(starts, a):bisect.bisect_left(starts, b)]: names[n] = names.get(n, 0) + 1
        return sorted(names.items(), key=lambda kv: -kv[1])[:6]
    other = {k: round(v/1e3, 2) for k, v in load.items() if k != s0}
    return dict(stream=s0, span_ms=round(span/1e3, 2), busy_ms=round(busy/1e3, 2), idle_ms=round((span - busy)/1e3, 2),
                gaps_over_min=len(gaps), gaps_over_min_ms=round(sum(g[0] for g in gaps)/1e3, 2), other_streams_ms=other,
                top=[dict(ms=round(d/1e3, 3), at_ms=round((a - t0)/1e3, 1), before=b[:60], after=n[:60], cpu=inside(a, e))
                     for d, a, e, b, n in sorted(gaps, reverse=True)[:top]])

def versions():
    import importlib.metadata as md
    v = {}
    for p in ('torch', 'transformers', 'peft', 'trl', 'bitsandbytes', 'liger-kernel', 'accelerate', 'datasets', 'unsloth'):
        try: v[p] = md.version(p)
        except md.PackageNotFoundError: v[p] = None
    try:
        import torch
        v['gpu'] = torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'
    except Exception: pass
    return v

def table(results:list) -> str:
    "Markdown table: configuration, attention, non-padding tokens/s, peak GB, estimate, speed vs its base"
    by = {r['name']: r for r in results if 'tokens_per_s' in r}
    lines = ['| configuration | data | attention | tokens/step | tokens/s | peak GB | est. GB | est. err % | vs base | last loss |',
             '|---|---|---|---:|---:|---:|---:|---:|---:|---:|']
    for r in results:
        if 'tokens_per_s' not in r:
            lines.append(f"| {r['name']} | | | failed: {r.get('error', '')[:100]} | | | | | | |"); continue
        base = by.get(r.get('base') or '')
        sp = f"{r['tokens_per_s']/base['tokens_per_s']:.2f}× {base['name']}" if base else '—'
        lines.append(f"| {r['name']} | {r['data']} | {r['attn']} | {r['tokens_per_step']:,} | {r['tokens_per_s']:,.0f} | "
                     f"{r['peak_gb'] or 0:.2f} | {r.get('est_gb', float('nan')):.2f} | {r.get('est_err_pct')} | {sp} | {r['last_loss']:.3f} |")
    return '\n'.join(lines)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--configs', default=','.join(DEFAULT), help='comma-separated names: ' + ', '.join(CONFIGS) +
                   '; a name + ' + '/'.join(BASELINES) + ' runs that configuration with one switch patched (BASELINES)')
    p.add_argument('--steps', type=int, default=8, help='timed steps per configuration')
    p.add_argument('--warmup', type=int, default=3, help='warm-up steps (compilation, allocator) not timed')
    p.add_argument('--profile', default='', help='comma-separated configurations whose last step is profiled (not timed)')
    p.add_argument('--out', default='bench_gpu.json', help='JSON file for the results (rewritten after each configuration)')
    p.add_argument('--ckpt', default=None, help='model directory (built when missing); default /tmp/qlora_bench_<size>')
    p.add_argument('--tiny', action='store_true', help='2-layer model instead of Mistral-7B (tests the script)')
    p.add_argument('--cpu', action='store_true', help='run on CPU (with --tiny): float32, adamw_torch, batch 1, max_length 256')
    p.add_argument('--timeout', type=int, default=150, help='seconds per configuration process')
    p.add_argument('--unsloth', default='', help="comma-separated scripts/bench_unsloth.py configurations run at the same time on "
                   "--unsloth-gpu (e.g. unsloth_real_packed,unsloth_b4); both tables are printed together")
    p.add_argument('--unsloth-gpu', default='1', help="CUDA_VISIBLE_DEVICES for the Unsloth runs (this script uses --gpu); "
                   "'after' = the same GPU, once this script's rows are done (a one-GPU machine)")
    p.add_argument('--gpu', default=None, help='CUDA_VISIBLE_DEVICES for this script\'s runs (default: as set)')
    p.add_argument('--unsloth-pythonpath', default=os.environ.get('UNSLOTH_PYTHONPATH', ''),
                   help='PYTHONPATH of the Unsloth environment (trl<=1.15, datasets<5 first; ../shared/gpu/README.md)')
    p.add_argument('--one', default=None, help=argparse.SUPPRESS)
    p.add_argument('--result', default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.cpu: os.environ['CUDA_VISIBLE_DEVICES'] = ''
    ckpt = Path(a.ckpt or f"/tmp/qlora_bench_{'tiny' if a.tiny else 'mistral7b'}")
    if a.one:
        run_one(a.one, str(ckpt), Path(a.result), a.cpu, a.steps, a.warmup, a.one in a.profile.split(',')); return
    names = [n.strip() for n in a.configs.split(',') if n.strip()]
    bad = [n for n in names if config(n) is None]
    if bad: sys.exit(f"Unknown configuration(s) {bad}. Choose from: {', '.join(CONFIGS)}; each may end in a baseline suffix: {', '.join(BASELINES)}")
    out = Path(a.out)
    doc = dict(date=datetime.date.today().isoformat(), versions=versions(), model='tiny' if a.tiny else 'Mistral-7B-v0.1 (random weights)',
               recipe='settings.ini (NF4 + double quant, bf16, LoRA r16 alpha 32 on 7 projections, paged_adamw_8bit, every layer '
                      'checkpointed) + each row\'s overrides; batch 4, grad_accum 1, max_length 2048', results=[])
    if not (ckpt/'config.json').exists():
        code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from scripts.bench_gpu import build_checkpoint; from pathlib import Path; "
                f"print('built in', round(build_checkpoint(Path({str(ckpt)!r}), {a.tiny}, {a.cpu}), 1), 's', flush=True)")
        subprocess.run([sys.executable, '-c', code], check=True, cwd=ROOT)
    if a.gpu is not None: os.environ['CUDA_VISIBLE_DEVICES'] = a.gpu
    uns = None
    def start_unsloth():   # Unsloth's rows in its own environment, on another GPU (now) or on this one (after ours)
        uout = out.with_name(out.stem + '_unsloth.json')
        uenv = {**os.environ, 'PYTHONPATH': a.unsloth_pythonpath or os.environ.get('PYTHONPATH', '')}
        if a.unsloth_gpu != 'after': uenv['CUDA_VISIBLE_DEVICES'] = a.unsloth_gpu
        return (uout, subprocess.Popen([sys.executable, str(ROOT/'scripts'/'bench_unsloth.py'), '--configs', a.unsloth, '--out', str(uout),
                                       '--ckpt', str(ckpt), '--steps', str(a.steps), '--warmup', str(a.warmup)], env=uenv, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    if a.unsloth:
        doc['unsloth'] = dict(configs=a.unsloth, gpu=a.unsloth_gpu, note='after these rows, on the same GPU' if a.unsloth_gpu == 'after'
                              else 'run at the same time as these rows, on another GPU of the machine')
        if a.unsloth_gpu != 'after': uns = start_unsloth()
    for name in names:
        res = Path(tempfile.mkdtemp())/'r.json'
        cmd = [sys.executable, __file__, '--one', name, '--result', str(res), '--ckpt', str(ckpt), '--steps', str(a.steps),
               '--warmup', str(a.warmup), '--profile', a.profile] + ['--tiny'] * a.tiny + ['--cpu'] * a.cpu
        t0 = time.time()
        try:
            pr = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, cwd=ROOT)
            if res.exists(): row = json.loads(res.read_text())
            else:
                err = (pr.stderr or pr.stdout).strip()
                row = dict(name=name, error=err.splitlines()[-1][:300] if err else f'exit {pr.returncode}', log_tail=err[-2500:])
        except subprocess.TimeoutExpired: row = dict(name=name, error=f'timeout after {a.timeout}s')
        row['process_s'] = round(time.time() - t0, 1)
        doc['results'].append(row)
        out.write_text(json.dumps(doc, indent=1))
        print(name, {k: row.get(k) for k in ('attn', 'tokens_per_s', 'tokens_per_step', 'peak_gb', 'est_gb', 'est_err_pct',
                                             'last_loss', 'process_s', 'error')}, flush=True)
    print(table(doc['results']))
    if a.unsloth and a.unsloth_gpu == 'after': uns = start_unsloth()
    if uns:
        uout, proc = uns
        log = proc.communicate()[0]
        if not uout.exists(): print('Unsloth runs failed:\n' + log[-3000:]); return
        udoc = json.loads(uout.read_text())
        doc['unsloth']['results'] = udoc['results']; doc['unsloth']['versions'] = udoc.get('versions')
        out.write_text(json.dumps(doc, indent=1))
        print(side_by_side(doc['results'], udoc['results']))

def side_by_side(ours:list, theirs:list) -> str:
    "One table: every qlora_nb row and every Unsloth row, non-padding tokens/s and peak GB, and the ratio to Unsloth on the same data"
    ref = {}
    for u in theirs:
        if 'tokens_per_s' in u: ref.setdefault('real_packed' if u.get('data') == 'real' and u.get('packing') else
                                               'real_unpacked' if u.get('data') == 'real' else 'syn2048', u)
    key = lambda r: 'syn2048' if r['data'] == 'syn2048' else 'real_packed' if r['recipe'].get('data.packing') else 'real_unpacked'
    lines = ['| run | data | tokens/s | peak GB | vs Unsloth on the same data |', '|---|---|---:|---:|---:|']
    for u in theirs:
        if 'tokens_per_s' in u:
            lines.append(f"| Unsloth {u['name']} | {u.get('data')}{' packed' if u.get('packing') else ''} | {u['tokens_per_s']:,.0f} | {u['peak_gb']:.2f} | 1.00× |")
        else: lines.append(f"| Unsloth {u['name']} | | failed: {u.get('error', '')[:80]} | | |")
    for r in ours:
        if 'tokens_per_s' not in r: continue
        u = ref.get(key(r))
        lines.append(f"| qlora_nb {r['name']} | {key(r).replace('_', ' ')} | {r['tokens_per_s']:,.0f} | {r['peak_gb']:.2f} | "
                     f"{r['tokens_per_s']/u['tokens_per_s']:.2f}× |" if u else f"| qlora_nb {r['name']} | {key(r)} | {r['tokens_per_s']:,.0f} | {r['peak_gb']:.2f} | — |")
    return '\n'.join(lines)

if __name__ == '__main__': main()
