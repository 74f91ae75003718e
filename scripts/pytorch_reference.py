#!/usr/bin/env python3
"""PyTorch reference for `dcgan bench`: the canonical pytorch/examples DCGAN training step
(D on real + detached fake with BCE, then G through D with "real" labels; Adam(2e-4,
(0.5, 0.999)); nz 100, ngf = ndf = 64; fp32 on the CPU or a GPU), timed the same way
`dcgan bench` times its steps: `warmup` untimed steps, then `steps` timed ones (on a GPU each
between two synchronizations); median and min ms/step.

    /tmp/torchenv/bin/python scripts/pytorch_reference.py --image-size 64 --channels 3 \
        --batch-size 128 --steps 20 --warmup 3 --threads 2
    python3 scripts/pytorch_reference.py --device cuda            # fp32 math, like dcgan's
    python3 scripts/pytorch_reference.py --device cuda --tf32     # cuDNN/cuBLAS tensor cores
    python3 scripts/pytorch_reference.py --autocast-bf16          # beside `--matmul bf16`

On a GPU, TF32 is off unless `--tf32` is given, so both engines do fp32 arithmetic;
`cudnn.benchmark` is on, as in pytorch/examples' DCGAN. `--autocast-bf16` runs the forward
passes under `torch.autocast(dtype=torch.bfloat16)`, PyTorch's mixed precision (on the CPU,
oneDNN's AMX kernels where the CPU has them), to set beside `dcgan bench --matmul bf16`.

Prints one JSON object (the same field names as `dcgan bench --json` where they overlap),
with `blas_gemm_gflops`: PyTorch's BLAS (MKL in the pip wheels) on a 2048³ sgemm, best of 4
on the same threads (cuBLAS on 4096³ on a GPU), to set beside the `peak_gflops` that
`dcgan bench` measures with the engine's own gemm on the same shape.
D ends in a logit and the loss is BCEWithLogits, the numerically stable form the engine uses
(pytorch/examples puts a Sigmoid in D and uses BCELoss: the same FLOPs within a rounding).
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn


def generator(nz, ngf, nc, size):
    n = size.bit_length() - 1 - 2  # stride-2 layers: 4x4 -> size
    ch = ngf * 2 ** (n - 1)
    layers = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
    for _ in range(1, n):
        layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
        ch //= 2
    layers += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def discriminator(ndf, nc, size):
    n = size.bit_length() - 1 - 2
    ch = ndf
    layers = [nn.Conv2d(nc, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    for _ in range(1, n):
        layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, inplace=True)]
        ch *= 2
    layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]
    return nn.Sequential(*layers)


def weights_init(m):
    name = m.__class__.__name__
    if name.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif name.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def blas_gemm_gflops(device, n=2048, reps=4):
    """An n³ fp32 matrix product through torch.mm, best of `reps` after one untimed."""
    a, b = torch.rand(n, n, device=device) * 2 - 1, torch.rand(n, n, device=device) * 2 - 1
    c = torch.empty(n, n, device=device)
    torch.mm(a, b, out=c)
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nz", type=int, default=100)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--tf32", action="store_true", help="let cuDNN and cuBLAS use TF32 tensor cores")
    ap.add_argument("--autocast-bf16", action="store_true", help="forward passes under bf16 autocast")
    a = ap.parse_args()

    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = a.tf32
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    netG = generator(a.nz, a.ngf, a.channels, a.image_size).to(dev)
    netD = discriminator(a.ndf, a.channels, a.image_size).to(dev)
    netG.apply(weights_init)
    netD.apply(weights_init)
    criterion = nn.BCEWithLogitsLoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    b = a.batch_size
    real = torch.rand(b, a.channels, a.image_size, a.image_size, device=dev) * 2 - 1
    noise = torch.randn(b, a.nz, 1, 1, device=dev)
    ones = torch.full((b,), 1.0, device=dev)
    zeros = torch.full((b,), 0.0, device=dev)

    autocast = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.autocast_bf16)

    def step():
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        with autocast():
            err_real = criterion(netD(real).view(-1), ones)
        err_real.backward()
        with autocast():
            fake = netG(noise)
            err_fake = criterion(netD(fake.detach()).view(-1), zeros)
        err_fake.backward()
        optD.step()
        # (2) Update G: maximize log(D(G(z)))
        netG.zero_grad()
        with autocast():
            err_g = criterion(netD(fake).view(-1), ones)
        err_g.backward()
        optG.step()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        sync(dev)
        t = time.perf_counter()
        step()
        sync(dev)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    gemm = blas_gemm_gflops(dev, 4096 if dev.type == "cuda" else 2048)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    tf32 = ", TF32" if dev.type == "cuda" and a.tf32 else ""
    tf32 += ", bf16 autocast" if a.autocast_bf16 else ""
    print(json.dumps({
        "device": "%s (PyTorch %s%s)" % (name, torch.__version__, tf32),
        "image_size": a.image_size,
        "channels": a.channels,
        "batch_size": b,
        "threads": torch.get_num_threads(),
        "steps": a.steps,
        "ms_per_step_median": med * 1e3,
        "ms_per_step_min": min(times) * 1e3,
        "images_per_s": b / med,
        "peak_rss_mib": rss,
        "blas_gemm_gflops": gemm,
    }))


if __name__ == "__main__":
    main()
