#!/usr/bin/env python
"""FSDP on every visible GPU (one or more), through the user path: the shipped toy model trained by `qlora-nb launch`
(`launch_plan(...).run()`), interrupted after its step-2 checkpoint (the finished run moved back to its work directory,
checkpoint-4 and the summary removed), resumed with `--resume`, then merged with `merge_adapter(into='dequantized')`.
Prints one JSON line per FSDP unit choice: the checkpoint's files (FSDP's sharded layout, with sizes), which checkpoint
resume picks and why, the resumed step, the merge report; exits 1 when any check fails. `--no-resume` checks only the
final adapter (saved, merged). The resumed run's adapter is compared with the uninterrupted run's (`drift`, against the
largest LoRA B entry `moved`). Before `fsdp_peft_names` (2026-12-01, one H200) the trainer's FSDP checkpoints held an
empty adapter shard and AdamW restarted from zero moments; layer units fail in the step after a sharded checkpoint
(`check_distributed` now refuses them with checkpoints before the end).

    python scripts/fsdp_resume_check.py --wrap lora
"""
import argparse, json, os, shutil, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

def check(wrap:str, resume:bool=True, arch:str='llama', version:int=1) -> dict:
    import torch
    from qlora_nb.distributed import fsdp_wrap, launch_plan
    from qlora_nb.merge import merge_adapter
    from qlora_nb.recipe import toy_recipe
    from qlora_nb.run import Run, pick_checkpoint
    tmp = Path(tempfile.mkdtemp())
    model = 'toy'
    if arch != 'llama':   # the shipped toy is a Llama with tied embeddings; this builds an untied toy (random weights)
        from transformers import AutoModelForCausalLM
        from qlora_nb.toy import build_toy_tokenizer, save_toy, toy_config
        tok = build_toy_tokenizer()
        torch.manual_seed(0)
        model = str(save_toy(AutoModelForCausalLM.from_config(toy_config(tok, arch)), tok, tmp/f'toy-{arch}'))
    r = toy_recipe(**{'model.name_or_path': model, 'distributed.strategy': 'fsdp', 'distributed.fsdp_wrap': wrap, 'quantization.compute_dtype': 'bfloat16',
                      'quantization.quant_storage': 'bfloat16', 'training.max_steps': 4, 'training.save_steps': 2,
                      'training.logging_steps': 1, 'training.batch_size': 8, 'training.optimizer': 'adamw_torch', 'distributed.fsdp_version': version,
                      'output.dir': str(tmp/'runs'), 'output.name': f'fsdp-{wrap}'})
    env = {**os.environ, 'NCCL_NVLS_ENABLE': '0'}
    plan = launch_plan(r)   # version 2: accelerate's FSDP2 block (`FSDP2_QLORA`; before it existed, this script edited the config the same way)
    out = dict(fsdp_version=version, wrap=wrap, chosen=fsdp_wrap(r)[0], gpus=torch.cuda.device_count(),
               processes=plan.config['num_processes'], use_orig_params=plan.config['fsdp_config'].get('fsdp_use_orig_params'))
    out['first_rc'] = plan.run(env)
    run = Run.of(r)
    from safetensors.torch import load_file
    from qlora_nb.run import adapter_weights_problem
    ad = run.adapter_dir if run.path.exists() else run.work.adapter_dir
    if (ad/'adapter_model.safetensors').exists():
        sd = load_file(str(ad/'adapter_model.safetensors'))
        out['adapter'] = dict(tensors=len(sd), empty=sum(v.numel() == 0 for v in sd.values()), problem=adapter_weights_problem(ad),
                              max_abs_B=max((v.abs().max().item() for k, v in sd.items() if 'lora_B' in k and v.numel()), default=None))
    if out['first_rc']: return dict(out, ok=False, work=sorted(p.name for p in run.work.path.iterdir()) if run.work.path.exists() else None)
    out['first_steps'] = run.summary()['steps']
    out['losses_whole'] = [round(x['loss'], 4) for x in run.log() if 'loss' in x]
    if not resume:   # the final adapter only: merge it
        merged = merge_adapter(str(run.path), into='dequantized')
        row = next(x for x in json.loads((merged/'qlora_merge.json').read_text())['report']['rows'] if x['variant'].startswith('merged'))
        return dict(out, effect_kept=row['effect_kept'], greedy_agreement=row['greedy_agreement'],
                    ok=row['effect_kept'] > 0.95 and row['greedy_agreement'] > 0.95)
    whole = load_file(str(run.adapter_dir/'adapter_model.safetensors'))
    os.replace(run.path, run.work.path)                      # as if interrupted after step 2's checkpoint
    ck4 = run.work.checkpoints_dir/'checkpoint-4'
    out['checkpoint_files'] = {p.relative_to(ck4).as_posix(): p.stat().st_size for p in sorted(ck4.rglob('*')) if p.is_file()}
    shutil.rmtree(ck4); run.work.summary_path.unlink()
    ck, notes = pick_checkpoint(run.work)
    out['picked'], out['pick_notes'] = ck.name if ck else None, notes
    out["resume_rc"] = launch_plan(r, resume=True).run(env)
    s = run.summary()
    out['losses_resumed'] = [(x['step'], round(x['loss'], 4)) for x in run.log() if 'loss' in x]
    out.update(steps=s['steps'], resumed_from=s['resumed_from'], first_loss=s['first_loss'], final_loss=s['final_loss'])
    resumed = load_file(str(run.adapter_dir/'adapter_model.safetensors'))
    out['moved'] = max(whole[k].float().abs().max().item() for k in whole if 'lora_B' in k)
    out['drift'] = max((resumed[k].float() - whole[k].float()).abs().max().item() for k in whole) if sorted(resumed) == sorted(whole) else None
    merged = merge_adapter(str(run.path), into='dequantized')
    rep = json.loads((merged/'qlora_merge.json').read_text())['report']
    row = next(x for x in rep['rows'] if x['variant'].startswith('merged'))
    out.update(effect_kept=row['effect_kept'], greedy_agreement=row['greedy_agreement'])
    out['ok'] = (out['first_rc'] == 0 and out['resume_rc'] == 0 and out['steps'] == 4 and out['resumed_from'] == 'checkpoint-2'
                 and out['drift'] is not None and out['drift'] <= 0.01 * out['moved']
                 and row['effect_kept'] > 0.95 and row['greedy_agreement'] > 0.95)
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--wrap', default='lora', help='comma-separated distributed.fsdp_wrap values to check')
    ap.add_argument('--arch', default='llama', help="toy architecture: llama (the shipped toy, tied embeddings) or mistral (untied)")
    ap.add_argument('--fsdp-version', type=int, default=1, help='distributed.fsdp_version: 1 (the default) or 2 (FSDP2)')
    ap.add_argument('--no-resume', action='store_true', help='check the final adapter (saved, merged) without the resume part')
    a = ap.parse_args()
    ok = True
    for w in a.wrap.split(','):
        try: res = check(w.strip(), resume=not a.no_resume, arch=a.arch, version=a.fsdp_version)
        except Exception as e: res = dict(wrap=w, ok=False, error=repr(e)[:500])
        ok &= res['ok']
        print(json.dumps(res), flush=True)
    sys.exit(0 if ok else 1)

if __name__ == '__main__': main()
