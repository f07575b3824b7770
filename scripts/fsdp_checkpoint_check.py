"""FSDP checkpoints (version 1, as launched by `qlora-nb launch`; `--fsdp-version 2`: FSDP2): adapter and optimizer state
saved and restored, on CPU with gloo ranks.

    python scripts/fsdp_checkpoint_check.py [--n-procs 2] [--no-fix] [--fsdp-version 1|2] [--out DIR]   # DIR/result.json

Validation code, outside the library. Each rank wraps a small Llama + LoRA with FSDP the way transformers' Trainer does
for peft (peft's auto-wrap policy: one unit per LoRA matrix, one per decoder layer, FULL_SHARD, no `use_orig_params`), then
goes through the calls a training run makes:
  * a checkpoint: accelerate's `save_fsdp_model(..., adapter_only=True)` (what the Trainer calls), then
    `load_fsdp_model` into a fresh wrapped model (what resume calls): are the LoRA matrices back?
  * the optimizer: AdamW stepped twice, saved with `save_fsdp_optimizer`, loaded into the fresh model's new optimizer
    with `load_fsdp_optimizer` (as the Trainer does): are the moments and step counts back?
  * the final adapter: the full state dict gathered to rank 0 (accelerate's `get_state_dict`), written by
    `qlora_nb.train.save_adapter` and loaded with `PeftModel.from_pretrained`: are the LoRA matrices in it?
Without `fsdp_peft_names` and `fsdp_optimizer_resume` (`--no-fix`), peft 0.21 finds none of the LoRA matrices and
accelerate 1.15 restores no optimizer state (it loads into a template taken from the new optimizer, which has none yet).
Under FSDP2 (`fully_shard` on each LoRA matrix, each decoder layer and the root; DCP state dicts) the same calls run.
"""
import argparse, contextlib, json, os, socket, sys, tempfile
from pathlib import Path
from types import SimpleNamespace

def _free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def worker(rank:int, world:int, port:int, out:str, fix:bool, version:int=1):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    import torch, torch.distributed as dist
    from accelerate import PartialState
    from accelerate.utils import save_fsdp_model, load_fsdp_model, save_fsdp_optimizer
    from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
    from peft.utils.other import fsdp_auto_wrap_policy
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import (FullyShardedDataParallel as FSDP, FullStateDictConfig, ShardedOptimStateDictConfig,
                                        ShardedStateDictConfig, StateDictType, fully_shard)
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer
    import transformers.trainer as hf_trainer
    from qlora_nb.train import fsdp_optimizer_resume, fsdp_peft_names, save_adapter
    PartialState(cpu=True)
    if fix: fsdp_peft_names(); fsdp_optimizer_resume()
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    def make():
        torch.manual_seed(0)
        return get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, target_modules=['q_proj', 'v_proj', 'down_proj']))
    def wrap(m):
        if version == 1: return FSDP(m, auto_wrap_policy=fsdp_auto_wrap_policy(m), device_id=torch.device('cpu'), use_orig_params=False)
        # FSDP2 with peft's policy as units, inner ones first: each LoRA Linear, each decoder layer, the root
        for n, mod in m.named_modules():
            if isinstance(mod, torch.nn.Linear) and ('lora_A' in n or 'lora_B' in n): fully_shard(mod)
        for mod in m.modules():
            if isinstance(mod, LlamaDecoderLayer): fully_shard(mod)
        return fully_shard(m)
    full = lambda t: t.full_tensor() if hasattr(t, 'full_tensor') else t   # FSDP2 shards are DTensors
    def lora(model, wrapped):   # the adapter as peft names it in a file, gathered from the shards
        with FSDP.summon_full_params(wrapped) if version == 1 else contextlib.nullcontext():
            return {k.replace('.default', ''): full(v).detach().clone() for k, v in model.state_dict().items() if '.lora_' in k}
    m = make()
    torch.manual_seed(1)
    for n, p in m.named_parameters():
        if 'lora_B' in n: p.data.normal_()          # a trained adapter: B no longer zero
    w, ck = wrap(m), Path(out)/'checkpoint'
    opt = torch.optim.AdamW([p for p in w.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):   # as in training (FSDP initialises on the first forward); the optimizer gets its moments
        w(input_ids=torch.tensor([[1, 2, 3, 4]])).logits.pow(2).mean().backward(); opt.step(); opt.zero_grad()
    ref = lora(m, w)
    plugin = SimpleNamespace(state_dict_type=StateDictType.SHARDED_STATE_DICT, state_dict_config=ShardedStateDictConfig(),
                             optim_state_dict_config=ShardedOptimStateDictConfig(), fsdp_version=version)
    acc = SimpleNamespace(process_index=rank, num_processes=world, wait_for_everyone=dist.barrier)
    save_fsdp_model(plugin, acc, w, str(ck), adapter_only=True)
    save_fsdp_optimizer(plugin, acc, opt, w, str(ck))
    m2 = make(); w2 = wrap(m2)
    opt2 = torch.optim.AdamW([p for p in w2.parameters() if p.requires_grad], lr=1e-2)
    load_fsdp_model(plugin, acc, w2, str(ck), adapter_only=True)
    hf_trainer.load_fsdp_optimizer(plugin, acc, opt2, w2, str(ck))   # the function the Trainer's resume calls
    states = lambda o: [(full(s['exp_avg']), full(s['exp_avg_sq']), float(s['step'])) for s in o.state.values()]
    moments, moments2 = states(opt), states(opt2)
    opt_equal = len(moments) == len(moments2) and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
                                                      for a, b in zip(moments, moments2))
    agree = torch.tensor(int(opt_equal)); dist.all_reduce(agree, op=dist.ReduceOp.MIN); opt_equal = bool(agree)   # every rank's shard
    back = lora(m2, w2)
    bnb_refused = None
    if fix and version == 1:   # bitsandbytes' 8-bit state does not go through FSDP's optimizer checkpoint: a clear error, not a crash inside it
        import bitsandbytes as bnb
        from qlora_nb.recipe import QloraError
        try: hf_trainer.load_fsdp_optimizer(plugin, acc, bnb.optim.AdamW8bit([p for p in w2.parameters() if p.requires_grad]), w2, str(ck))
        except QloraError as e: bnb_refused = str(e)
    if version == 1:   # accelerate's get_state_dict gathers the same way (its offload to CPU is for GPU ranks)
        with FSDP.state_dict_type(w, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=False, rank0_only=False)):
            sd = w.state_dict()
    else: sd = get_model_state_dict(w, options=StateDictOptions(full_state_dict=True, cpu_offload=True))   # FSDP2's
    res = None
    if rank == 0:
        if fix: save_adapter(m, Path(out)/'adapter', state_dict=sd)
        else: m.save_pretrained(Path(out)/'adapter', state_dict=sd)   # what `save_adapter` does, without `fsdp_peft_names`
        torch.manual_seed(0)
        saved = PeftModel.from_pretrained(LlamaForCausalLM(cfg), str(Path(out)/'adapter'))
        got = {k: v for k, v in get_peft_model_state_dict(saved).items()}
        same = lambda a: sorted(a) == sorted(ref) and all(torch.equal(a[k].float(), ref[k].float()) for k in ref)
        res = dict(fsdp_version=version, world_size=world, fix=fix, adapter_keys=len(ref),
                   adapter_shard_bytes=sum(f.stat().st_size for f in (ck/'pytorch_model_fsdp_0').glob('*.distcp')),
                   lora_B=sum('lora_B' in k for k in ref), resumed_B=sum(torch.equal(back[k], ref[k]) for k in ref if 'lora_B' in k),
                   resumed_equal=same(back), optimizer_states=len(moments),
                   resumed_optimizer_states=len(moments2), optimizer_equal=opt_equal, bnb_refused=bnb_refused, final_keys=len(load_file(str(Path(out)/'adapter'/'adapter_model.safetensors'))), final_equal=same(got))
    for model, o in ((w, opt), (w2, opt2)):   # one more step each: the resumed run must take the step the whole run takes
        model(input_ids=torch.tensor([[4, 3, 2, 1]])).logits.pow(2).mean().backward(); o.step(); o.zero_grad()
    after, after2 = lora(m, w), lora(m2, w2)
    next_equal = torch.tensor(int(all(torch.equal(after[k], after2[k]) for k in after)))
    dist.all_reduce(next_equal, op=dist.ReduceOp.MIN)
    if rank == 0:
        res['next_step_equal'] = bool(next_equal)
        Path(out, 'result.json').write_text(json.dumps(res, indent=1))
    dist.barrier(); dist.destroy_process_group()

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n-procs', type=int, default=2)
    ap.add_argument('--no-fix', action='store_true', help="without fsdp_peft_names / fsdp_optimizer_resume (shows what they fix)")
    ap.add_argument('--out', default=None)
    ap.add_argument('--fsdp-version', type=int, default=1, help='2: the same checks under FSDP2 (fully_shard)')
    a = ap.parse_args()
    out = Path(a.out or tempfile.mkdtemp()); out.mkdir(parents=True, exist_ok=True)
    import torch.multiprocessing as mp
    mp.spawn(worker, args=(a.n_procs, _free_port(), str(out), not a.no_fix, a.fsdp_version), nprocs=a.n_procs)
    print((out/'result.json').read_text())

if __name__ == '__main__': main()
