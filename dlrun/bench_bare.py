"""The bare PyTorch script `python -m dlrun.bench --only startup` times against `dlrun train`.

It does the default run's job with nothing but scikit-learn and PyTorch, the way a tutorial
would: digits from scikit-learn, a stratified 65/15/20 train/val/test split, features
standardized on train, an MLP 64-256-256-10, Adam (lr 1e-3), batch 32, 30 epochs, validation
accuracy after every epoch, test accuracy at the end. It imports nothing from dlrun, so it can
be run on its own: `python dlrun/bench_bare.py [EPOCHS]`.
"""

import sys

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


def main(epochs: int = 30) -> None:
    torch.set_num_threads(1)  # as dlrun's trainer.threads=1
    digits = load_digits()
    x, y = digits.data, digits.target
    rest, test = train_test_split(range(len(x)), test_size=0.2, random_state=0, stratify=y)
    train, val = train_test_split(rest, test_size=0.15 / 0.8, random_state=0, stratify=y[rest])
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    x = (x - mean) / (std + (std == 0))
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = ((x[i], y[i]) for i in (train, val, test))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def accuracy(xs: torch.Tensor, ys: torch.Tensor) -> float:
        model.eval()
        with torch.no_grad():
            acc = (model(xs).argmax(-1) == ys).float().mean().item()
        model.train()
        return acc

    for epoch in range(epochs):
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            opt.zero_grad()
            loss_fn(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
        print(f"epoch {epoch + 1}: val acc {accuracy(x_val, y_val):.4f}")
    print(f"test acc {accuracy(x_test, y_test):.4f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
