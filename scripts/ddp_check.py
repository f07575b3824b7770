"""Two-process DDP check on CPU (gloo): do the ranks end with the same adapter?

    python scripts/ddp_check.py [--n-procs 2] [--steps 8] [--out DIR]      # writes DIR/result.json, prints it

Validation code, outside the library. It writes a toy recipe (`distributed.strategy = ddp`), starts `n` ranks with
`torchrun` on this same file (`--worker`), and each rank runs `finetune` (the function behind `qlora-nb train`) with
seed + rank and a callback that saves its LoRA matrices when the trainer is built (before DDP broadcasts rank 0's) and
when training ends. Different starts and identical ends show that DDP synchronised the ranks.
"""
import argparse, json, os, shlex, socket, subprocess, sys, tempfile, time
from pathlib import Path

def lora_state(model) -> dict:
    return {k.replace('.default', ''): v.detach().float().cpu().clone() for k, v in model.state_dict().items() if 'lora_' in k}

def worker(recipe_path:str, out:Path):
    "One rank: `finetune` with seed + rank, saving the LoRA matrices at trainer init and at the end"
    import torch.distributed as dist
    from safetensors.torch import save_file
    from transformers import TrainerCallback
    from qlora_nb.recipe import load_recipe
    from qlora_nb.train import finetune
    rank = int(os.environ.get('RANK', 0))
    r = load_recipe(recipe_path)
    r = r.override(**{'training.seed': r.training.seed + rank})
    class Snapshots(TrainerCallback):
        def on_init_end(self, args, state, control, model=None, **kw): save_file(lora_state(model), str(out/f'rank{rank}_init.safetensors'))
        def on_train_end(self, args, state, control, model=None, **kw):
            save_file(lora_state(model), str(out/f'rank{rank}_final.safetensors'))
            (out/f'rank{rank}.json').write_text(json.dumps(dict(rank=rank, world_size=dist.get_world_size(),
                                                                backend=str(dist.get_backend_config()), seed=r.training.seed)))
    finetune(r, overwrite=True, callbacks=[Snapshots()])

def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def ddp_check(n_procs:int=2, steps:int=8, out:str|Path|None=None, timeout:int=900) -> dict:
    "Train the toy model with DDP on `n_procs` CPU processes (gloo); returns losses, adapter differences and timing"
    from safetensors.torch import load_file
    from qlora_nb.recipe import toy_recipe, write_recipe
    from qlora_nb.run import Run
    out = Path(out or tempfile.mkdtemp(prefix='qlora-ddp-')); out.mkdir(parents=True, exist_ok=True)
    r = toy_recipe(**{'training.max_steps': steps, 'training.batch_size': 8, 'training.logging_steps': 2,
                      'output.dir': str(out/'runs'), 'output.name': 'ddp', 'distributed.strategy': 'ddp',
                      'distributed.num_processes': n_procs})
    rp = write_recipe(r, out/'recipe.ini')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(n_procs), '--master_port', str(free_port()),
           __file__, '--worker', '--recipe', str(rp), '--out', str(out)]
    env = dict(os.environ, OMP_NUM_THREADS='1', TOKENIZERS_PARALLELISM='false', CUDA_VISIBLE_DEVICES='')
    t0 = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    secs = time.time() - t0
    (out/'launch.log').write_text(p.stdout + p.stderr)
    if p.returncode != 0:
        raise RuntimeError(f"DDP launch failed (exit {p.returncode}); last lines of {out/'launch.log'}:\n" + '\n'.join((p.stdout + p.stderr).splitlines()[-15:]))
    init = [load_file(str(out/f'rank{i}_init.safetensors')) for i in range(n_procs)]
    final = [load_file(str(out/f'rank{i}_final.safetensors')) for i in range(n_procs)]
    maxdiff = lambda a, b: max((a[k] - b[k]).abs().max().item() for k in a)
    summ = Run.of(r).summary()
    return dict(seconds=round(secs, 1), command=shlex.join(cmd), dist=[json.loads((out/f'rank{i}.json').read_text()) for i in range(n_procs)],
                n_tensors=len(final[0]), init_diff=max(maxdiff(init[0], x) for x in init[1:]),
                final_diff=max(maxdiff(final[0], x) for x in final[1:]), moved=maxdiff(final[0], init[0]),
                first_loss=summ['first_loss'], final_loss=summ['final_loss'], out=str(out))

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--n-procs', type=int, default=2)
    ap.add_argument('--steps', type=int, default=8)
    ap.add_argument('--out', default=None)
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--recipe', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: worker(a.recipe, Path(a.out)); sys.exit(0)
    res = ddp_check(a.n_procs, a.steps, a.out)
    Path(res['out'], 'result.json').write_text(json.dumps(res, indent=1))
    print(json.dumps(res))
