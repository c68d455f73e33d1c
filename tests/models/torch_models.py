"""Small torch models for tests/test_import.py: what a user brings to `gradconf import torch`."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    """A ResNet basic block with batch norm and a skip connection, then a pooled head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(4)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 3 * 3, 5)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        y = F.relu(y + x)
        return self.fc(torch.flatten(self.pool(y), 1))


class PlainResidual(nn.Module):
    """The same shape of block without batch norm."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = torch.tanh(self.stem(x))
        y = self.conv2(torch.relu(self.conv1(x)))
        return self.fc((x + y).view(x.size(0), -1))


class TinyUNet(nn.Module):
    """Encoder, bottleneck, transposed-conv decoder and a concat skip."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(2, 3, 3, padding=1)
        self.down = nn.MaxPool2d(2)
        self.mid = nn.Conv2d(3, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 3, 2, stride=2)
        self.dec = nn.Conv2d(6, 2, 3, padding=1)

    def forward(self, x):
        e = torch.tanh(self.enc(x))
        m = F.relu(self.mid(self.down(e)))
        return self.dec(torch.cat([self.up(m), e], dim=1))


class Unmappable(nn.Module):
    """Two modules and an op gradconf has no entry for."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 1)
        self.norm = nn.InstanceNorm2d(2)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.cumsum(self.norm(x), dim=1).flatten(1))


def basic_block():
    torch.manual_seed(0)
    return BasicBlock().eval()


def plain_residual():
    torch.manual_seed(1)
    return PlainResidual()


def tiny_unet():
    torch.manual_seed(2)
    return TinyUNet()
