"""The PyTorch reference trainer: scripts/bench/torch_unet.py's U-Net trained
with moondust's recipe (scripts/moondust train) for a time budget, so that
quality at equal CPU time can be compared with the same metric.

  LD_PRELOAD=libtcmalloc_minimal.so.4 OPENBLAS_NUM_THREADS=1 \\
    /usr/bin/python3 scripts/bench/torch_train.py --minutes 30 --out DIR [--lr 5e-4]
      [--lr-decay constant|cosine|linear] [--warmup 200] [--ema-decay 0.999] [--batch-size 128]
      [--threads 2] [--jit] [--seed 0]
  scripts/moondust eval --checkpoint DIR/model.safetensors --n 1000

The recipe, as md.trainer runs it: Fashion-MNIST's training split scaled to
[-1, 1], reshuffled every epoch, the last partial batch dropped; t uniform in
0..999 on the linear schedule (betas 1e-4..0.02); eps prediction and the mean
squared error; label dropout 0.1 to the null class 10; AdamW (betas 0.9 and
0.999, eps 1e-8, weight decay 0); a linear warm-up over `warmup` steps times
the decay over the budget's share spent; gradients clipped to norm 1; an EMA
with decay min(decay, (1 + n) / (10 + n)). The budget counts the training
loop only, as moondust's --minutes does.

DIR/model.safetensors holds the EMA weights under moondust's parameter names
(torch_unet.UNet's state dict is named like md.nn.UNet's) with the metadata
md.load needs; DIR/log.jsonl has moondust's run-log lines, so that
`scripts/moondust compare` overlays the two trainers.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_unet import UNet, write_safetensors  # noqa: E402

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CONFIG = {"attention_resolutions": [4], "channel_mult": [1, 2, 2], "dropout": 0, "image_size": [28, 28],
          "in_channels": 1, "model_channels": 32, "norm_groups": 8, "num_classes": 10, "num_head_channels": 32,
          "num_res_blocks": 2, "out_channels": 1, "use_scale_shift_norm": False}


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    kind, dims = raw[2], raw[3]
    if raw[:2] != b"\0\0" or kind != 8:
        raise SystemExit("%s: not an IDX file of bytes" % path)
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(raw[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def decay(kind, p):
    if kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * p))
    if kind == "linear":
        return 1 - p
    return 1.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--lr-decay", choices=["constant", "cosine", "linear"], default="constant")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jit", action="store_true", help="torch.jit.trace the model (the benchmark's other fp32 mode)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    if a.minutes <= 0 or a.lr <= 0 or a.warmup < 0 or not 0 <= a.ema_decay <= 1 or a.batch_size < 1 or a.threads < 1:
        raise SystemExit("torch_train: --minutes, --lr, --batch-size and --threads must be positive, --warmup "
                         "at least 0, --ema-decay in [0, 1]")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    images = read_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz")).float().mul_(2 / 255).sub_(1).unsqueeze(1)
    labels = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz")).long()
    n, bs = images.shape[0], a.batch_size
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0).float()
    model = UNet(CONFIG["model_channels"])
    weights = list(model.parameters())
    opt = torch.optim.AdamW(weights, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    ema = [p.detach().clone() for p in weights]
    step_model = model
    if a.jit:
        step_model = torch.jit.trace(model, (images[:bs], torch.zeros(bs, dtype=torch.long), labels[:bs]))
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "log.jsonl"), "w")
    budget = 60 * a.minutes
    step, order, pos = 0, torch.randperm(n), 0
    window_loss, window_steps = 0.0, 0
    start = window_start = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now - start >= budget:
            break
        if pos + bs > n:
            order, pos = torch.randperm(n), 0
        idx = order[pos:pos + bs]
        pos += bs
        x0, y = images[idx], labels[idx]
        t = torch.randint(0, 1000, (bs,))
        noise = torch.randn_like(x0)
        y = torch.where(torch.rand(bs) < 0.1, torch.full_like(y, 10), y)
        ab = alpha_bar[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        loss = F.mse_loss(step_model(xt, t, y), noise)
        if not math.isfinite(loss.item()):
            raise SystemExit("torch_train: the loss became %s at step %d" % (loss.item(), step + 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(weights, 1.0)
        lr = a.lr * min(1.0, (step + 1) / a.warmup if a.warmup > 0 else 1.0) * decay(a.lr_decay, min(1.0, (now - start) / budget))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        d = min(a.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_mul_(ema, d)
            torch._foreach_add_(ema, [p.detach() for p in weights], alpha=1 - d)
        step += 1
        window_loss, window_steps = window_loss + loss.item(), window_steps + 1
        if step % 50 == 0:
            t1 = time.perf_counter()
            log.write(json.dumps({"step": step, "wall_seconds": t1 - start, "loss": window_loss / window_steps, "lr": lr,
                                  "images_per_second": window_steps * bs / (t1 - window_start)}, separators=(",", ":")) + "\n")
            log.flush()
            window_loss, window_steps, window_start = 0.0, 0, t1
    seconds = time.perf_counter() - start
    if window_steps:
        log.write(json.dumps({"step": step, "wall_seconds": seconds, "loss": window_loss / window_steps, "lr": lr,
                              "images_per_second": window_steps * bs / (time.perf_counter() - window_start)},
                             separators=(",", ":")) + "\n")
    log.close()
    names = [k for k, _ in model.named_parameters()]
    tensors = {"ema." + k: v for k, v in zip(names, ema)}
    tensors.update({"model." + k: v for k, v in model.state_dict().items()})
    meta = {"model": "unet", "config": json.dumps(CONFIG), "schedule": "linear", "prediction": "eps", "image_size": "28",
            "classes": json.dumps(CLASSES), "step": str(step),
            "trainer": "PyTorch %s, scripts/bench/torch_train.py %s" % (torch.__version__, " ".join(sys.argv[1:]))}
    path = os.path.join(a.out, "model.safetensors")
    write_safetensors(path, tensors, meta)
    print("trained %d steps in %.1f s (%.1f images/s); saved %s" % (step, seconds, step * bs / seconds, path))


if __name__ == "__main__":
    main()
