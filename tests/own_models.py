"""Models "a user brings" for the FILE.py:FUNCTION tests (tests/test_own_model.py): each
function returns the architecture; the tests train it and pass the weights with --weights."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Tabular: 13 features -> 3 classes (the wine data)."""

    def __init__(self, features: int = 13, classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, 32)
        self.bn1 = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 16)
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.fc1(x)))
        return self.head(torch.relu(self.fc2(h)))


class ResCNN(nn.Module):
    """Images 1x14x14 -> 10 classes: Conv2d + BatchNorm stem, one residual block, max pooling."""

    def __init__(self, classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(width)
        self.pool0 = nn.MaxPool2d(2)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(width * 3 * 3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool0(torch.relu(self.bn0(self.stem(x))))  # 7x7
        r = torch.relu(self.bn1(self.conv1(h)))
        h = torch.relu(self.bn2(self.conv2(r)) + h)  # residual add
        return self.fc(torch.flatten(self.pool(h), 1))  # 3x3


class Signal1D(nn.Module):
    """Signals 2x64 -> 4 classes: two Conv1d layers with max pooling and a linear classifier."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(2, 8, 5)
        self.conv2 = nn.Conv1d(8, 16, 3)
        self.pool = nn.MaxPool1d(2)
        self.fc = nn.Linear(16 * 14, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.conv1(x)))  # 60 -> 30
        h = self.pool(torch.relu(self.conv2(h)))  # 28 -> 14
        return self.fc(h.flatten(1))


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return MLP()


def rescnn() -> nn.Module:
    torch.manual_seed(0)
    return ResCNN()


def signal1d() -> nn.Module:
    torch.manual_seed(0)
    return Signal1D()


def not_a_model() -> str:
    return "a string"


def broken() -> nn.Module:
    raise RuntimeError("cannot build")
