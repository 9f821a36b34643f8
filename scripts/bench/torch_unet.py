"""The reference U-Net in PyTorch, built exactly like moondust's md.nn.UNet
(guided-diffusion's UNetModel at small size), and the benchmark figures for
it. Run by scripts/bench/run.lua; one figure per process so that peak memory
is that figure's own.

  /usr/bin/python3 scripts/bench/torch_unet.py FIGURE MODEL_CHANNELS REPEATS MODE
  FIGURE: params | train | sample | sample_cfg | forward1     MODE: eager | jit
Prints one JSON line: {"times": [...], "maxrss_mb": ..., "params": ...}.

  /usr/bin/python3 scripts/bench/torch_unet.py --fixture tests/fixtures/unet_parity.safetensors
writes the whole-model parity fixture that tests/lua/test_parity.lua checks
moondust against (see write_fixture).
"""
import json
import math
import os
import struct
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def zero(m):
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


class GroupNorm32(nn.GroupNorm):
    """GroupNorm in the weights' precision (ADM's GroupNorm32): under CPU
    autocast PyTorch 1.13 would hand it bf16 activations with fp32 weights."""

    def forward(self, x):
        return super().forward(x.to(self.weight.dtype)).to(x.dtype)


def norm(ch, groups=8):
    return GroupNorm32(groups, ch)


def timestep_embedding(t, dim, max_period=10000, dtype=torch.float32):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype) / half)
    args = t[:, None].to(dtype) * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, ch, emb, out, groups=8):
        super().__init__()
        self.in_layers = nn.Sequential(norm(ch, groups), nn.SiLU(), nn.Conv2d(ch, out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, out))
        self.out_layers = nn.Sequential(norm(out, groups), nn.SiLU(), nn.Dropout(0.0), zero(nn.Conv2d(out, out, 3, padding=1)))
        self.skip_connection = nn.Identity() if out == ch else nn.Conv2d(ch, out, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    def __init__(self, ch, head_ch, groups=8):
        super().__init__()
        self.heads = ch // head_ch
        self.norm = norm(ch, groups)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj_out = zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x):
        b, c, hh, ww = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, hh * ww)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # [b, heads, d, L]
        w = torch.softmax(torch.einsum("bhct,bhcs->bhts", q, k) / math.sqrt(c // self.heads), dim=-1)
        a = torch.einsum("bhts,bhcs->bhct", w, v).reshape(b, c, hh, ww)
        return x + self.proj_out(a)


class Seq(nn.Sequential):
    def forward(self, x, emb):
        for m in self:
            x = m(x, emb) if isinstance(m, ResBlock) else m(x)
        return x


class Down(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Up(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNet(nn.Module):
    def __init__(self, mc=32, mult=(1, 2, 2), nres=2, attn=(4,), head_ch=32, num_classes=10, groups=8):
        super().__init__()
        self.mc = mc
        emb = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_emb = nn.Embedding(num_classes + 1, emb)
        self.input_blocks = nn.ModuleList([Seq(nn.Conv2d(1, mc, 3, padding=1))])
        chans, ch, ds = [mc], mc, 1
        for level, m in enumerate(mult):
            for _ in range(nres):
                layers = [ResBlock(ch, emb, m * mc, groups)]
                ch = m * mc
                if ds in attn:
                    layers.append(AttentionBlock(ch, head_ch, groups))
                self.input_blocks.append(Seq(*layers))
                chans.append(ch)
            if level != len(mult) - 1:
                self.input_blocks.append(Seq(Down(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = Seq(ResBlock(ch, emb, ch, groups), AttentionBlock(ch, head_ch, groups),
                                ResBlock(ch, emb, ch, groups))
        self.output_blocks = nn.ModuleList([])
        for level, m in list(enumerate(mult))[::-1]:
            for i in range(nres + 1):
                layers = [ResBlock(ch + chans.pop(), emb, mc * m, groups)]
                ch = mc * m
                if ds in attn:
                    layers.append(AttentionBlock(ch, head_ch, groups))
                if level and i == nres:
                    layers.append(Up(ch))
                    ds //= 2
                self.output_blocks.append(Seq(*layers))
        self.out = nn.Sequential(norm(ch, groups), nn.SiLU(), zero(nn.Conv2d(mc, 1, 3, padding=1)))

    def forward(self, x, t, y):
        emb = self.time_embed(timestep_embedding(t, self.mc, dtype=x.dtype)) + self.label_emb(y)
        hs, h = [], x
        for m in self.input_blocks:
            h = m(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for m in self.output_blocks:
            h = m(torch.cat([h, hs.pop()], 1), emb)
        return self.out(h)


def ddim_alphas(T=1000, steps=50):
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    ab = torch.cumprod(1 - betas, 0)
    ts = list(range(0, T, T // steps))[::-1]
    return ab.float(), ts


def sample(model, n, cfg, steps=50):
    """DDIM-50, eta 0; with cfg the conditional and unconditional halves run in one batch."""
    ab, ts = ddim_alphas(steps=steps)
    x = torch.randn(n, 1, 28, 28)
    y = torch.full((n,), 7, dtype=torch.long)
    with torch.no_grad():
        for i, t in enumerate(ts):
            tt = torch.full((n,), t, dtype=torch.long)
            if cfg:
                e = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, torch.full((n,), 10)]))
                ec, eu = e.chunk(2)
                eps = eu + 3.0 * (ec - eu)
            else:
                eps = model(x, tt, y)
            eps = eps.float()  # bf16 under autocast
            a, ap = ab[t], (ab[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0))
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            x = ap.sqrt() * x0 + (1 - ap).sqrt() * eps
    return x


# The parity fixture's model, in md.nn.UNet's option names (meta.config, so
# that md.load builds it). mult {1, 1}: with {1, 2} the weights and their
# gradients alone would take 1.4 MB. 16 channels everywhere (32 where skips
# are concatenated), so that oneDNN keeps every activation but the input's
# and the output's in the blocked layout. norm_groups 4, not the default 8,
# so that a config that did not travel through meta.config would show.
FIXTURE_CONFIG = {"model_channels": 16, "channel_mult": [1, 1], "num_res_blocks": 1,
                  "attention_resolutions": [2], "num_head_channels": 8, "num_classes": 10,
                  "norm_groups": 4, "in_channels": 1, "out_channels": 1}


def write_safetensors(path, tensors, meta):
    """The safetensors format by hand (Debian has no python3-safetensors): an
    8-byte little-endian header length, a JSON header {name: {dtype, shape,
    data_offsets}, __metadata__: {str: str}} padded with spaces to 8 bytes,
    then the raw little-endian float32 data."""
    header, blobs, offset = {"__metadata__": meta}, [], 0
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    os.replace(path + ".tmp", path)


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def write_fixture(path):
    """A small U-Net with random non-zero weights everywhere (the layers that
    start at zero too, else their gradients would prove nothing), a batch of
    inputs, the output, an MSE loss against a fixed target and every
    parameter's gradient. The weights and inputs are float32 values; the
    reference is computed from them in float64, so that a test against it
    measures moondust's own float32 error, not the sum of two. Batch 8 at
    28x28 puts the 16-channel 3x3 layers over the Winograd threshold
    (8 * 28 * 28 >= 4096 output positions, backend/dnnl_conv.c); the 14x14
    level stays under it and runs the direct kernels."""
    c = FIXTURE_CONFIG

    def build(dtype):
        return UNet(c["model_channels"], tuple(c["channel_mult"]), c["num_res_blocks"],
                    tuple(c["attention_resolutions"]), c["num_head_channels"], c["num_classes"],
                    c["norm_groups"]).to(dtype)

    torch.manual_seed(14)
    model = build(torch.float32)
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if isinstance(module, nn.GroupNorm):
                    p.copy_((1.0 if name == "weight" else 0.0) + 0.2 * torch.randn_like(p))
                elif p.dim() == 1:  # biases
                    p.copy_(0.2 * torch.randn_like(p))
                else:  # unit-variance outputs for unit-variance inputs
                    p.copy_(torch.randn_like(p) / math.sqrt(p[0].numel()))
    n = 8
    x = torch.randn(n, 1, 28, 28)
    t = torch.tensor([0, 1, 17, 250, 500, 731, 998, 999])
    y = torch.tensor([0, 3, 9, 10, 5, 10, 1, 7])  # 10 is "no class"
    target = torch.randn(n, 1, 28, 28)

    def run(dtype):
        m = build(dtype)
        m.load_state_dict(model.state_dict())
        out = m(x.to(dtype), t, y)
        loss = F.mse_loss(out, target.to(dtype))
        loss.backward()
        return out, loss, {name: p.grad for name, p in m.named_parameters()}

    out, loss, grads = run(torch.float64)
    out32, loss32, grads32 = run(torch.float32)
    # PyTorch's own float32 error against the float64 reference: the scale
    # of error that any float32 implementation shows here
    errors = {"output": rel_err(out32, out), "loss": rel_err(loss32, loss)}
    errors.update({"grad." + k: rel_err(grads32[k], g) for k, g in grads.items()})
    worst = max(errors, key=errors.get)
    tensors = {"model." + k: v for k, v in model.state_dict().items()}
    tensors.update({"x": x, "t": t.float(), "y": y.float(), "target": target, "output": out, "loss": loss.reshape(1)})
    tensors.update({"grad." + k: g for k, g in grads.items()})
    meta = {"model": "unet", "config": json.dumps(c),
            "reference": "PyTorch %s, float64, from float32 weights and inputs" % torch.__version__,
            "command": "/usr/bin/python3 scripts/bench/torch_unet.py --fixture " + path,
            "torch_fp32_worst_rel_err": "%.3g" % errors[worst], "torch_fp32_worst_tensor": worst}
    write_safetensors(path, tensors, meta)
    print("%s: %d parameters, %d bytes; PyTorch float32 against float64: worst relative error %.3g (%s), "
          "output %.3g, loss %.3g" % (path, sum(p.numel() for p in model.parameters()), os.path.getsize(path),
                                       errors[worst], worst, errors["output"], errors["loss"]))


def main():
    if sys.argv[1] == "--fixture":
        return write_fixture(sys.argv[2])
    figure, mc, repeats, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    # mode: eager, jit (traced; frozen for inference) or bf16 (eager under
    # torch.autocast("cpu", dtype=torch.bfloat16): PyTorch's mixed precision)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16")
    torch.manual_seed(0)
    model = UNet(mc)
    params = sum(p.numel() for p in model.parameters())
    times = []
    if figure == "train":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        weights = list(model.parameters())
        ema = [p.detach().clone() for p in weights]

        def batch():
            return torch.randn(128, 1, 28, 28), torch.randint(0, 1000, (128,)), torch.randint(0, 11, (128,))

        step_model = model
        if mode == "jit":
            step_model = torch.jit.trace(model, batch())
        # as a training loop runs it: a fresh batch each step, the EMA update
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            x, t, y = batch()
            noise = torch.randn_like(x)
            with autocast:
                out = step_model(x, t, y)
            loss = F.mse_loss(out.float(), noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                torch._foreach_mul_(ema, 0.999)
                torch._foreach_add_(ema, [p.detach() for p in weights], alpha=0.001)
            if i > 0:  # the first step warms up
                times.append(time.perf_counter() - t0)
    elif figure in ("sample", "sample_cfg", "forward1"):
        model.eval()
        n = 1 if figure == "forward1" else 256
        cfg = figure == "sample_cfg"
        run_model = model
        if mode == "jit":
            b = 2 * n if cfg else n
            with torch.no_grad():
                ex = (torch.randn(b, 1, 28, 28), torch.zeros(b, dtype=torch.long), torch.zeros(b, dtype=torch.long))
                run_model = torch.jit.freeze(torch.jit.trace(model, ex))
        for i in range(repeats + 1):  # the first run (2 steps when sampling) warms up
            t0 = time.perf_counter()
            with autocast:
                if figure == "forward1":
                    with torch.no_grad():
                        run_model(torch.randn(1, 1, 28, 28), torch.tensor([500]), torch.tensor([3]))
                else:
                    sample(run_model, n, cfg, 50 if i > 0 else 2)
            if i > 0:
                times.append(time.perf_counter() - t0)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "maxrss_mb": maxrss, "params": params}))


if __name__ == "__main__":
    main()
