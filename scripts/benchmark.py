"""CPU forward time of our PromptIR against the same network with a straightforward layer norm.

The straightforward variant is the official formulation: rearrange (B, C, H, W) -> (B, HW, C),
mean/var/normalise with separate element-wise ops, rearrange back. Both variants share the same
weights, so the script also prints the largest output difference (should be ~1e-5 or less).

    python scripts/benchmark.py                    # 1x3x128x128, full-size PromptIR
    python scripts/benchmark.py --size 64 --repeats 3 --threads 2

Not a test: timings depend on the machine and its load. Speed claims come from running this.
"""
import argparse
import time

import torch
from torch import nn

import promptir_basicsr  # noqa: F401  (compat + registrations)
from promptir_basicsr.archs.promptir_arch import PromptIR
from promptir_basicsr.archs.restormer_blocks import NORM_EPS, LayerNorm


class RearrangeLayerNorm(nn.Module):
    """The straightforward channel layer norm: two reshaping copies and separate element-wise ops."""

    def __init__(self, fused):
        super().__init__()
        self.body = fused.body  # share the parameters (same state-dict keys)
        self.bias_free = fused.bias_free

    def forward(self, x):
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2).contiguous()  # 'b c h w -> b (h w) c'
        var = t.var(-1, keepdim=True, unbiased=False)
        if self.bias_free:
            t = t / torch.sqrt(var + NORM_EPS) * self.body.weight
        else:
            t = (t - t.mean(-1, keepdim=True)) / torch.sqrt(var + NORM_EPS) * self.body.weight + self.body.bias
        return t.transpose(1, 2).reshape(b, c, h, w).contiguous()  # 'b (h w) c -> b c h w'


def with_rearrange_norms(net):
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LayerNorm):
                setattr(module, name, RearrangeLayerNorm(child))
    return net


def time_forwards(nets, x, repeats):
    """Best-of-``repeats`` seconds per net; the nets alternate within each round, so a change in
    machine load during the run affects both variants alike."""
    best = [float('inf')] * len(nets)
    with torch.inference_mode():
        outs = [net(x) for net in nets]  # warm-up (allocator, oneDNN primitive cache)
        for _ in range(repeats):
            for i, net in enumerate(nets):
                start = time.perf_counter()
                net(x)
                best[i] = min(best[i], time.perf_counter() - start)
    return best, outs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=128, help='input height and width (default 128)')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per variant; the minimum is shown')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    parser.add_argument('--layernorm', default='WithBias', choices=['WithBias', 'BiasFree'])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    ours = PromptIR(LayerNorm_type=args.layernorm).eval()
    reference = with_rearrange_norms(PromptIR(LayerNorm_type=args.layernorm).eval())
    reference.load_state_dict(ours.state_dict())
    x = torch.rand(1, 3, args.size, args.size)

    (t_ours, t_ref), (out_ours, out_ref) = time_forwards([ours, reference], x, args.repeats)
    diff = (out_ours - out_ref).abs().max().item()

    print(f'PromptIR forward, CPU, 1x3x{args.size}x{args.size}, {torch.get_num_threads()} threads, '
          f'LayerNorm {args.layernorm}, best of {args.repeats}')
    print(f'| variant                     | time (s) | ratio to ours |')
    print(f'|-----------------------------|----------|---------------|')
    print(f'| ours (fused layer norm)     | {t_ours:8.3f} | {1.0:13.2f} |')
    print(f'| rearrange-style layer norm  | {t_ref:8.3f} | {t_ref / t_ours:13.2f} |')
    print(f'max |difference| of outputs: {diff:.2e}')


if __name__ == '__main__':
    main()
