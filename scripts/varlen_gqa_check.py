#!/usr/bin/env python
"""On a GPU: `qlora_nb.packing._varlen` with grouped-query K/V (fewer heads than Q) handed to the flash kernel as they are,
against the same call with K/V heads repeated (`REPEAT_KV = True`) and against sdpa one segment at a time. Prints the
largest differences of the output and of the gradients of q, k and v, as JSON.

    python scripts/varlen_gqa_check.py"""
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch, torch.nn.functional as F
import qlora_nb.packing as P

def run(repeat:bool, q, k, v, cu, mx, g):
    P.REPEAT_KV = repeat
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    out = P._varlen(q, k, v, cu, mx, None)
    out.backward(g)
    return [out.detach(), q.grad, k.grad, v.grad]

def reference(q, k, v, cu, g):
    q, k, v = (x.detach().float().requires_grad_() for x in (q, k, v))
    b = cu.tolist()
    out = torch.cat([F.scaled_dot_product_attention(*(x[s:e].transpose(0, 1) for x in (q, k, v)), is_causal=True,
                     enable_gqa=True).transpose(0, 1) for s, e in zip(b, b[1:])])
    out.backward(g.float())
    return [out.detach(), q.grad, k.grad, v.grad]

def main():
    torch.manual_seed(0)
    lens = [700, 13, 1500, 260, 1, 1622]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device='cuda')
    N, mx = sum(lens), max(lens)
    q = torch.randn(N, 32, 128, device='cuda', dtype=torch.bfloat16)
    k, v = (torch.randn(N, 8, 128, device='cuda', dtype=torch.bfloat16) for _ in range(2))
    g = torch.randn(N, 32, 128, device='cuda', dtype=torch.bfloat16)
    native, repeated, ref = run(False, q, k, v, cu, mx, g), run(True, q, k, v, cu, mx, g), reference(q, k, v, cu, g)
    d = lambda a, b: round((a.float() - b.float()).abs().max().item(), 5)
    names = ['out', 'dq', 'dk', 'dv']
    res = dict(torch=torch.__version__, shapes=dict(q=list(q.shape), kv=list(k.shape), segments=lens),
               native_vs_repeated={n: d(a, b) for n, a, b in zip(names, native, repeated)},
               native_vs_sdpa_fp32={n: d(a, b) for n, a, b in zip(names, native, ref)},
               repeated_vs_sdpa_fp32={n: d(a, b) for n, a, b in zip(names, repeated, ref)},
               grad_shapes=[list(t.shape) for t in native[1:]])
    print(json.dumps(res))

if __name__ == '__main__': main()
