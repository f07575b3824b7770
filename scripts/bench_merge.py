#!/usr/bin/env python
"""Merge fidelity on a 7B-shaped model: the Mistral-7B-v0.1 architecture with random weights, loaded in 4-bit NF4
(double quantization, bf16 compute, as the tutorial's recipe), a LoRA adapter (r=16, alpha=32, the seven
projections), and the three merges `qlora_nb.merge` offers, measured against the 4-bit base + adapter (the model as
trained) with the library's own `logit_fidelity` and `effect_kept`.

Adapters: (1) random ones whose update ‖ΔW‖_F is a set fraction of ‖W‖_F (0.5%, 2%, 8%), and (2) one *trained* on the
4-bit base for `--steps` AdamW steps at lr 2e-4 (the tutorial's rate) to memorize random token sequences, so that its
size comes from real optimizer dynamics and it was trained against the dequantized weights, like a real adapter.

    python scripts/bench_merge.py --out merge_7b.json          # H200: about 1 minute after the model is built
    python scripts/bench_merge.py --tiny --cpu --out /tmp/m.json  # a 2-layer model on CPU: tests this script's logic

Merged weights are computed as peft computes them (`W += ΔW` in the weight's dtype, ΔW in float32; the 4-bit merge
re-quantizes `deq(W4) + ΔW` to NF4), on one copy of each base, restored between variants."""
import argparse, json, math, sys, tempfile, time
from pathlib import Path
import torch
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']

def build(tiny:bool, dev:str, dtype):
    from transformers import MistralConfig, AutoModelForCausalLM
    kw = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              vocab_size=1024) if tiny else dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
              num_attention_heads=32, num_key_value_heads=8, vocab_size=32000)
    cfg = MistralConfig(**kw, tie_word_embeddings=False, max_position_embeddings=4096)
    torch.manual_seed(0)
    with torch.device(dev): m = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return m.eval()

def lora_modules(model):
    "name -> Linear (or Linear4bit) for every LoRA target, in a stable order"
    return {n: m for n, m in model.named_modules() if n.split('.')[-1] in TARGETS and hasattr(m, 'weight')}

@torch.no_grad()
def logits(model, ids): return model(input_ids=ids).logits.float().cpu()

def main():
    p = argparse.ArgumentParser()
    p.add_argument('--out', default='merge_7b.json'); p.add_argument('--tiny', action='store_true'); p.add_argument('--cpu', action='store_true')
    p.add_argument('--steps', type=int, default=150); p.add_argument('--lr', type=float, default=2e-4)
    p.add_argument('--scales', default='0.005,0.02,0.08')
    a = p.parse_args()
    dev = 'cpu' if a.cpu else 'cuda'
    dtype = torch.float32 if a.cpu else torch.bfloat16
    import bitsandbytes as bnb, peft, transformers
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from peft import LoraConfig, get_peft_model
    from qlora_nb.merge import dequantize_4bit_model, logit_fidelity, effect_kept
    t0 = time.time(); T = {}
    m16 = build(a.tiny, dev, dtype)
    T['build_s'] = round(time.time() - t0, 1)
    tmp = Path(tempfile.mkdtemp()) / 'base'
    m16.save_pretrained(tmp); T['save_s'] = round(time.time() - t0 - T['build_s'], 1)
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    dm = {'': 0} if dev == 'cuda' else {'': 'cpu'}
    m4 = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=q, dtype=dtype, device_map=dm).eval()
    md = dequantize_4bit_model(AutoModelForCausalLM.from_pretrained(tmp, quantization_config=q, dtype=dtype, device_map=dm), dtype).eval()
    T['load_s'] = round(time.time() - t0 - T['build_s'] - T['save_s'], 1)
    V, L = m16.config.vocab_size, (32 if a.tiny else 128)
    g = torch.Generator().manual_seed(1)
    train_ids = torch.randint(0, V, (64, L), generator=g).to(dev)
    ids = train_ids[:8]  # the fidelity texts: sequences the trained adapter learned (where its effect lives)
    lc = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS, bias='none', task_type='CAUSAL_LM')
    pm = get_peft_model(m4, lc)
    for n, prm in pm.named_parameters():
        if 'lora_' in n: prm.data = prm.data.to(torch.bfloat16)  # trl trains (and saves) a QLoRA adapter in bf16
    scaling = lc.lora_alpha / lc.r
    lmods = {n.removeprefix('base_model.model.'): m for n, m in pm.named_modules() if hasattr(m, 'lora_A') and n.split('.')[-1] in TARGETS}
    w16, wd = lora_modules(m16), lora_modules(md)
    orig16 = {n: m.weight.data.clone() for n, m in w16.items()}
    origd = {n: m.weight.data.clone() for n, m in wd.items()}
    base16, based = logits(m16, ids), logits(md, ids)
    with pm.disable_adapter(): ref_base = logits(pm, ids)
    mask = torch.ones(ids.shape, dtype=torch.bool)
    quant_err = {k: v for k, v in logit_fidelity(ref_base, base16, mask).items()}  # 16-bit base vs 4-bit base, no adapter
    def deltas():
        return {n: (m.lora_B['default'].weight.float() @ m.lora_A['default'].weight.float()) * scaling for n, m in lmods.items()}
    def rel_norm(ds):
        return math.sqrt(sum(d.float().pow(2).sum().item() for d in ds.values()) / sum(orig16[n].float().pow(2).sum().item() for n in ds))
    def measure(label):
        ref = logits(pm, ids)
        ds, rows = deltas(), []
        for into, mods, orig, base in (('16bit', w16, orig16, base16), ('dequantized', wd, origd, based), ('4bit', wd, origd, based)):
            for n, m in mods.items():
                if into == '4bit':
                    qw, st = bnb.functional.quantize_4bit((orig[n].float() + ds[n]).to(dtype).contiguous(), blocksize=64,
                                                         quant_type='nf4', compress_statistics=True)
                    m.weight.data = bnb.functional.dequantize_4bit(qw, st).to(dtype)
                else: m.weight.data = orig[n].clone(); m.weight.data += ds[n]  # peft: in the weight's dtype, ΔW in float32
            lm = logits(m16 if into == '16bit' else md, ids)
            rows.append(dict(variant=f'merged: {into}', **logit_fidelity(ref, lm, mask), effect_kept=effect_kept(ref, ref_base, lm, base, mask)))
            for n, m in mods.items(): m.weight.data = orig[n].clone()
        adapter = logit_fidelity(ref, ref_base, mask)  # how much the adapter changes the model (base without adapter vs reference)
        return dict(adapter=label, update_rel_norm=rel_norm(ds), base_no_adapter_kl=adapter['mean_kl'],
                    base_no_adapter_greedy=adapter['greedy_agreement'], rows=rows)
    results = []
    for s in [float(x) for x in a.scales.split(',')]:
        torch.manual_seed(2)
        with torch.no_grad():
            for n, m in lmods.items():
                A, B = m.lora_A['default'].weight, m.lora_B['default'].weight
                torch.nn.init.kaiming_uniform_(A, a=math.sqrt(5))  # peft's init of A
                B.normal_()
                k = s * orig16[n].float().norm() / ((B.float() @ A.float()) * scaling).norm()
                B.mul_(k)
        results.append(measure(f'random, |dW|/|W| = {s:g}'))
        print(json.dumps(results[-1]), flush=True)
    # a trained adapter: B = 0 at start (peft's init), AdamW at the tutorial's lr, loss on random sequences
    with torch.no_grad():
        for n, m in lmods.items():
            torch.nn.init.kaiming_uniform_(m.lora_A['default'].weight, a=math.sqrt(5)); m.lora_B['default'].weight.zero_()
    params = [prm for n, prm in pm.named_parameters() if 'lora_' in n]
    for prm in params: prm.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    pm.train(); t1 = time.time(); losses = []
    for step in range(a.steps):
        b = train_ids[(step * 8) % 64:(step * 8) % 64 + 8]
        loss = pm(input_ids=b, labels=b).loss
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 4))
    pm.eval(); T['train_s'] = round(time.time() - t1, 1)
    trained = measure(f'trained: {a.steps} AdamW steps at lr {a.lr:g}')
    trained['loss_first_last'] = [losses[0], losses[-1]]
    results.append(trained); print(json.dumps(trained), flush=True)
    env = dict(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__, bitsandbytes=bnb.__version__,
               device=torch.cuda.get_device_name(0) if dev == 'cuda' else 'cpu', model='Mistral-7B-v0.1 architecture, random weights'
               if not a.tiny else 'tiny Mistral (2 layers)', dtype=str(dtype), tokens=int(mask.sum()), quant_error_16bit_vs_4bit_base=quant_err)
    Path(a.out).write_text(json.dumps(dict(env=env, timings=T, results=results), indent=1))
    print(json.dumps(dict(timings=T)))

if __name__ == '__main__': main()
