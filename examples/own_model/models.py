"""Two models as a user writes them, for `hwprune prune models.py:FUNCTION` (docs/own_model.md).

    cnn()  vision: 1x14x14 digits -> 10 classes (Conv2d + BatchNorm, a residual block, max pooling)
    mlp()  tabular: 13 wine features -> 3 classes (Linear + BatchNorm + ReLU)

Each function returns the architecture; the trained weights come with --weights.
"""

import torch
from torch import nn


class DigitCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(16)
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * 3 * 3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(torch.relu(self.bn0(self.stem(x))))      # 14x14 -> 7x7
        r = torch.relu(self.bn1(self.conv1(h)))
        h = torch.relu(self.bn2(self.conv2(r)) + h)             # residual block
        return self.fc(torch.flatten(self.pool(h), 1))          # 7x7 -> 3x3 -> classes


class WineMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(13, 64)
        self.bn1 = nn.BatchNorm1d(64)
        self.fc2 = nn.Linear(64, 32)
        self.out = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.bn1(self.fc1(x))))))


def cnn() -> nn.Module:
    return DigitCNN()


def mlp() -> nn.Module:
    return WineMLP()
