#!/usr/bin/env python3
"""Load a dcgan checkpoint's generator into PyTorch's reference DCGAN Generator and check that
it reproduces the images `dcgan sample` saved for the same z.

    dcgan sample --checkpoint RUN --out S
    python scripts/check_pytorch_generator.py RUN/checkpoints/step_NNNNNN S/samples.safetensors

Needs torch and safetensors (pip install torch safetensors). The Generator is pytorch/examples'
dcgan `Generator` (an nn.Sequential called `main`), with one ConvTranspose/BatchNorm/ReLU stage
per doubling so that any power-of-two image size works (64 gives the example's exact network).
"""
import json, math, sys
import torch, torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file


def generator(nz, ngf, nc, image_size):
    stages = int(math.log2(image_size)) - 2
    ch = ngf * 2 ** (stages - 1)
    layers = [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
    for _ in range(stages - 1):
        layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
        ch //= 2
    layers += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), nn.Tanh()]
    g = nn.Module()
    g.main = nn.Sequential(*layers)
    return g


def main():
    ckpt, samples = sys.argv[1], sys.argv[2]
    state = json.load(open(f"{ckpt}/state.json"))
    cfg = state["config"]
    # A conditional G (train --conditional) reads z with the one-hot class appended.
    classes = state.get("classes", 0)
    g = generator(cfg["nz"] + classes, cfg["ngf"], state["channels"], cfg["image_size"])
    # The weights file `dcgan sample` used (G's running average by default, when the run kept one).
    with safe_open(samples, "pt") as f:
        weights = (f.metadata() or {}).get("generator", "generator")
    g.load_state_dict(load_file(f"{ckpt}/{weights}.safetensors"), strict=True)
    g.eval()
    s = load_file(samples)
    z = s["z"].reshape(s["z"].shape[0], -1, 1, 1)
    if classes:
        one_hot = torch.nn.functional.one_hot(s["labels"], classes).to(z.dtype)
        z = torch.cat([z, one_hot.reshape(-1, classes, 1, 1)], dim=1)
    with torch.no_grad():
        out = g.main(z)
    diff = (out - s["images"]).abs().max().item()
    print(f"load_state_dict(strict=True) of {weights}.safetensors: ok; max |PyTorch - dcgan| = {diff:.3g}")
    sys.exit(0 if diff <= 1e-4 else 1)


if __name__ == "__main__":
    main()
