#!/usr/bin/env python3
"""PyTorch reference for `dcgan bench`: the canonical pytorch/examples DCGAN training step
(D on real + detached fake with BCE, then G through D with "real" labels; Adam(2e-4,
(0.5, 0.999)); nz 100, ngf = ndf = 64; fp32 on the CPU), timed the same way `dcgan bench`
times its steps: `warmup` untimed steps, then `steps` timed ones; median and min ms/step.

    /tmp/torchenv/bin/python scripts/pytorch_reference.py --image-size 64 --channels 3 \
        --batch-size 128 --steps 20 --warmup 3 --threads 2

Prints one JSON object (the same field names as `dcgan bench --json` where they overlap),
with `blas_gemm_gflops`: PyTorch's BLAS (MKL in the pip wheels) on a 2048³ sgemm, best of 4
on the same threads, to set beside the `peak_gflops` that `dcgan bench` measures with the
engine's own gemm on the same shape.
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


def blas_gemm_gflops(n=2048, reps=4):
    """A 2048³ fp32 matrix product through torch.mm, best of `reps` after one untimed."""
    a, b = torch.rand(n, n) * 2 - 1, torch.rand(n, n) * 2 - 1
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b, out=c)
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
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    netG = generator(a.nz, a.ngf, a.channels, a.image_size)
    netD = discriminator(a.ndf, a.channels, a.image_size)
    netG.apply(weights_init)
    netD.apply(weights_init)
    criterion = nn.BCEWithLogitsLoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    b = a.batch_size
    real = torch.rand(b, a.channels, a.image_size, a.image_size) * 2 - 1
    noise = torch.randn(b, a.nz, 1, 1)
    ones = torch.full((b,), 1.0)
    zeros = torch.full((b,), 0.0)

    def step():
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        err_real = criterion(netD(real).view(-1), ones)
        err_real.backward()
        fake = netG(noise)
        err_fake = criterion(netD(fake.detach()).view(-1), zeros)
        err_fake.backward()
        optD.step()
        # (2) Update G: maximize log(D(G(z)))
        netG.zero_grad()
        err_g = criterion(netD(fake).view(-1), ones)
        err_g.backward()
        optG.step()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    gemm = blas_gemm_gflops()
    print(json.dumps({
        "device": "cpu (PyTorch %s)" % torch.__version__,
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
