#!/usr/bin/env python
"""On a GPU: the attention kernels that can isolate trl's packed examples, timed on one layer of Mistral-7B's shape
(32 query heads, 8 K/V heads, head dim 128, 8,192 tokens per micro-batch) and checked against float32 sdpa run one
example at a time. Two layouts: `full` (4 examples of 2,048 tokens) and `real` (real-length examples packed into
8,192 tokens, as `bench_gpu.py`'s real rows). Prints one JSON object per kernel and layout.

    python scripts/attn_kernels.py [--iters 30]"""
import argparse, json, sys
from types import SimpleNamespace
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch, torch.nn.functional as F
import qlora_nb.packing as P

H, HKV, D, T = 32, 8, 128, 8192

def layout(name:str) -> list:
    if name == 'full': return [2048] * 4
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_gpu import real_length_rows
    lens = [len(r['prompt'].split()) + len(r['completion'].split()) + 1 for r in real_length_rows(400, 32000)]   # + EOS
    packs = [[] for _ in range(T // 2048)]   # 4 packs of <= 2,048 tokens, filled first-fit in the data's order
    for n in lens:
        fit = next((p for p in packs if sum(p) + n <= 2048), None)
        if fit is not None: fit.append(n)
    return [n for p in packs for n in p]

def flops(lens, bwd:bool) -> float:   # causal: half of 4·H·D·L² per example; the backward ~2.5x the forward
    f = sum(2 * H * D * l * l for l in lens)
    return f * (3.5 if bwd else 1.0)

def kernels(lens):
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device='cuda')
    mx, uniform = max(lens), len(set(lens)) == 1
    rep = lambda x: x.repeat_interleave(H // HKV, dim=1)
    def cudnn(q, k, v):
        return torch.ops.aten._cudnn_attention_forward(q, k, v, None, cu, cu, mx, mx, True, 0.0, True, False)[0]
    mod = SimpleNamespace(sliding_window=None, config=SimpleNamespace(sliding_window=None))
    def ours(q, k, v):   # qlora_nb's attention function, on the (1, h, N, D) views transformers hands over
        views = (x.unsqueeze(0).transpose(1, 2) for x in (q, k, v))
        return P.varlen_attention(mod, *views, None, cu_seq_lens_q=cu, max_length_q=mx)[0].reshape(-1, H, D)
    ks = {'varlen_attention': ours,
          'flash_varlen': lambda q, k, v: P._varlen(q, k, v, cu, mx, None),
          'cudnn_varlen_gqa': cudnn,
          'cudnn_varlen_rep': lambda q, k, v: cudnn(q, rep(k), rep(v))}
    if uniform:
        B, S = len(lens), lens[0]
        def dense(backend, gqa):
            def f(q, k, v):
                qb, kb, vb = (x.reshape(B, S, x.shape[1], D).transpose(1, 2) for x in (q, k, v))
                if not gqa: kb, vb = (x.repeat_interleave(H // HKV, dim=1) for x in (kb, vb))
                with torch.nn.attention.sdpa_kernel(backend):
                    o = F.scaled_dot_product_attention(qb, kb, vb, is_causal=True, enable_gqa=gqa)
                return o.transpose(1, 2).reshape(B * S, H, D)
            return f
        SB = torch.nn.attention.SDPBackend
        ks.update(flash_dense_gqa=dense(SB.FLASH_ATTENTION, True), cudnn_dense_gqa=dense(SB.CUDNN_ATTENTION, True),
                  cudnn_dense_rep=dense(SB.CUDNN_ATTENTION, False))
    return cu, ks

def reference(q, k, v, lens, g):
    q, k, v = (x.detach().float().requires_grad_() for x in (q, k, v))
    b = [0] + torch.tensor(lens).cumsum(0).tolist()
    out = torch.cat([F.scaled_dot_product_attention(*(x[s:e].transpose(0, 1) for x in (q, k, v)), is_causal=True,
                     enable_gqa=True).transpose(0, 1) for s, e in zip(b, b[1:])])
    out.backward(g.float())
    return [out.detach(), q.grad, k.grad, v.grad]

def timed(fn, iters:int) -> float:
    for _ in range(3): fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters): fn()
    b.record(); torch.cuda.synchronize()
    return a.elapsed_time(b) / iters

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--iters', type=int, default=30); a = ap.parse_args()
    torch.manual_seed(0)
    print(json.dumps(dict(torch=torch.__version__, cudnn=torch.backends.cudnn.version(), gpu=torch.cuda.get_device_name())))
    for name in ('full', 'real'):
        lens = layout(name); N = sum(lens)
        q = torch.randn(N, H, D, device='cuda', dtype=torch.bfloat16)
        k, v = (torch.randn(N, HKV, D, device='cuda', dtype=torch.bfloat16) for _ in range(2))
        g = torch.randn(N, H, D, device='cuda', dtype=torch.bfloat16)
        ref = reference(q, k, v, lens, g)
        cu, ks = kernels(lens)
        for kname, f in ks.items():
            row = dict(layout=name, kernel=kname, examples=len(lens), tokens=N, max_len=max(lens))
            try:
                qq, kk, vv = (x.detach().requires_grad_() for x in (q, k, v))
                out = f(qq, kk, vv); out.backward(g)
                got = [out.detach(), qq.grad, kk.grad, vv.grad]
                row['max_err'] = {n: round((x.float() - r).abs().max().item(), 4) for n, x, r in zip(['out', 'dq', 'dk', 'dv'], got, ref)}
                with torch.no_grad(): row['fwd_ms'] = round(timed(lambda: f(q, k, v), a.iters), 3)
                def step():
                    qq, kk, vv = (x.detach().requires_grad_() for x in (q, k, v))
                    f(qq, kk, vv).backward(g)
                row['fwd_bwd_ms'] = round(timed(step, a.iters), 3)
                row['fwd_tflops'] = round(flops(lens, False) / row['fwd_ms'] / 1e9, 1)
                row['fwd_bwd_tflops'] = round(flops(lens, True) / row['fwd_bwd_ms'] / 1e9, 1)
            except Exception as e: row['error'] = f'{type(e).__name__}: {str(e)[:300]}'
            print(json.dumps(row), flush=True)

if __name__ == '__main__': main()
