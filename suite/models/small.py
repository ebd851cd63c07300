"""The suite's own small image classifiers.

Conv layers are followed by BatchNorm: without it these small nets stay at chance on the
``shapes`` dataset for many epochs (measured: 0.2 vs 0.99 test accuracy after 12 epochs).

Every forward pass is a chain of modules (no functional ReLU, no module used twice), so hooks
(guided backprop, DeconvNet, LRP) see every non-linearity. ReLUs are not in-place.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


def _check_shape(in_shape: tuple[int, int, int], num_classes: int) -> tuple[int, int, int]:
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ValueError(f"in_shape must be (C, H, W) with positive sizes, got {in_shape!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return tuple(int(s) for s in in_shape)  # type: ignore[return-value]


def _conv_trunk(c: int, widths: tuple[int, int, int]) -> "OrderedDict[str, nn.Module]":
    w1, w2, w3 = widths
    return OrderedDict(
        conv1=nn.Conv2d(c, w1, 3, padding=1), bn1=nn.BatchNorm2d(w1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(w1, w2, 3, padding=1), bn2=nn.BatchNorm2d(w2), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        conv3=nn.Conv2d(w2, w3, 3, padding=1), bn3=nn.BatchNorm2d(w3), relu3=nn.ReLU(),
    )


class SimpleCNN(nn.Module):
    """Three 3x3 conv layers (two max-pools) and a two-layer fully connected head."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int],
                 widths: tuple[int, int, int] = (16, 32, 64), hidden: int = 128):
        super().__init__()
        c, _, _ = _check_shape(in_shape, num_classes)
        self.features = nn.Sequential(_conv_trunk(c, widths))
        self.classifier = nn.Sequential(OrderedDict(
            pool=nn.AdaptiveAvgPool2d(4), flatten=nn.Flatten(),
            fc1=nn.Linear(widths[2] * 16, hidden), relu=nn.ReLU(),
            fc2=nn.Linear(hidden, num_classes),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Fully connected network; it has no feature map, so Grad-CAM does not apply to it."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int],
                 hidden: tuple[int, int] = (256, 128)):
        super().__init__()
        c, h, w = _check_shape(in_shape, num_classes)
        self.net = nn.Sequential(OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(c * h * w, hidden[0]), relu1=nn.ReLU(),
            fc2=nn.Linear(hidden[0], hidden[1]), relu2=nn.ReLU(),
            fc3=nn.Linear(hidden[1], num_classes),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CAMCNN(nn.Module):
    """Conv trunk, global average pooling and one linear layer: the CAM architecture (Zhou 2016)."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int],
                 widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        c, _, _ = _check_shape(in_shape, num_classes)
        self.features = nn.Sequential(_conv_trunk(c, widths))
        self.classifier = nn.Sequential(OrderedDict(
            gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(widths[2], num_classes),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """ResNet basic block; the skip addition is followed by its own ReLU module."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(cin, cout, 1, stride=stride, bias=False), bn=nn.BatchNorm2d(cout)))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class ResNet8(nn.Module):
    """ResNet-8 (He et al. 2016, the 6n+2 CIFAR family with n = 1): stem and three basic blocks."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int],
                 widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        c, _, _ = _check_shape(in_shape, num_classes)
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(c, widths[0], 3, padding=1, bias=False), bn=nn.BatchNorm2d(widths[0]),
            relu=nn.ReLU()))
        self.layer1 = BasicBlock(widths[0], widths[0], 1)
        self.layer2 = BasicBlock(widths[0], widths[1], 2)
        self.layer3 = BasicBlock(widths[1], widths[2], 2)
        self.head = nn.Sequential(OrderedDict(
            gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(widths[2], num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer3(self.layer2(self.layer1(self.stem(x)))))


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.max = nn.AdaptiveMaxPool2d(1)
        self.mlp = nn.Sequential(OrderedDict(
            fc1=nn.Conv2d(channels, hidden, 1), relu=nn.ReLU(), fc2=nn.Conv2d(hidden, channels, 1)))
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.mlp(self.avg(x)) + self.mlp(self.max(x)))


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * self.gate(self.conv(pooled))


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., ECCV 2018): channel then spatial gate."""

    def __init__(self, channels: int, reduction: int = 4, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class CBAMCNN(nn.Module):
    """The simple CNN's trunk with a CBAM block after every conv layer, GAP head."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int],
                 widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        c, _, _ = _check_shape(in_shape, num_classes)
        w1, w2, w3 = widths
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(c, w1, 3, padding=1), bn1=nn.BatchNorm2d(w1), relu1=nn.ReLU(), cbam1=CBAM(w1),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(w1, w2, 3, padding=1), bn2=nn.BatchNorm2d(w2), relu2=nn.ReLU(), cbam2=CBAM(w2),
            pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(w2, w3, 3, padding=1), bn3=nn.BatchNorm2d(w3), relu3=nn.ReLU(), cbam3=CBAM(w3),
        ))
        self.classifier = nn.Sequential(OrderedDict(
            gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(w3, num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class PreActUnit(nn.Module):
    """Pre-activation residual unit (He et al. 2016b), the building block of residual attention
    networks: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the identity (or a 1x1 conv when the shape
    changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu2(self.bn2(self.conv1(self.relu1(self.bn1(x)))))) + self.shortcut(x)


class AttentionModule(nn.Module):
    """Attention module of a residual attention network (Wang et al., CVPR 2017), one level deep.

    Trunk branch ``T``: a residual unit. Soft mask branch ``M``: bottom-up (max-pool, residual
    unit) then top-down (bilinear upsampling to the trunk's size), then BN-ReLU-1x1 conv twice and a
    sigmoid, a mask in (0, 1) per channel and pixel. Output: attention residual learning,
    ``(1 + M) * T``. The paper's modules also have residual units before and after the branches
    and a deeper mask (skip connections between scales); for 16-32 pixel inputs one level is all
    the resolution allows.
    """

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.trunk = PreActUnit(c, c)
        self.mask_down = nn.MaxPool2d(2)
        self.mask_unit = PreActUnit(c, c)
        self.mask_up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.mask_out = nn.Sequential(OrderedDict(
            bn1=nn.BatchNorm2d(c), relu1=nn.ReLU(), conv1=nn.Conv2d(c, c, 1, bias=False),
            bn2=nn.BatchNorm2d(c), relu2=nn.ReLU(), conv2=nn.Conv2d(c, c, 1),
            gate=nn.Sigmoid()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.trunk(x)
        m = self.mask_up(self.mask_unit(self.mask_down(x)))
        if m.shape[-2:] != t.shape[-2:]:   # odd sizes: the pooled map lost a row / column
            m = nn.functional.pad(m, (0, t.shape[-1] - m.shape[-1], 0, t.shape[-2] - m.shape[-2]),
                                  mode="replicate")
        return (1.0 + self.mask_out(m)) * t


class ResidualAttentionNet(nn.Module):
    """A small residual attention network (Wang et al. 2017) for 16-64 pixel inputs: conv stem and
    max-pool, then two stages of (residual unit, attention module), a last residual unit, and a
    BN-ReLU-global-average-pool-linear head."""

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int],
                 widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        c, _, _ = _check_shape(in_shape, num_classes)
        w1, w2, w3 = widths
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(c, w1, 3, padding=1, bias=False), bn=nn.BatchNorm2d(w1), relu=nn.ReLU(),
            pool=nn.MaxPool2d(2)))
        self.unit1 = PreActUnit(w1, w2)
        self.attention1 = AttentionModule(w2)
        self.unit2 = PreActUnit(w2, w3, stride=2)
        self.attention2 = AttentionModule(w3)
        self.unit3 = PreActUnit(w3, w3)
        self.head = nn.Sequential(OrderedDict(
            bn=nn.BatchNorm2d(w3), relu=nn.ReLU(), gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(),
            fc=nn.Linear(w3, num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention1(self.unit1(self.stem(x)))
        return self.head(self.unit3(self.attention2(self.unit2(x))))


class WideBlock(nn.Module):
    """Pre-activation wide residual block (Zagoruyko and Komodakis 2016): BN-ReLU-conv3x3-BN-ReLU-
    conv3x3 plus the identity (or a 1x1 conv when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.unit = PreActUnit(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(x)


class AttentionHead(nn.Module):
    """One attention module of WARN ("Attend and rectify", Rodriguez et al., ECCV 2018) on a
    feature map Z (N, C, h, w), with K heads:

    * attention masks ``H = softmax over the h x w positions of conv1x1(Z)`` (K maps),
    * per head class scores ``o_k = sum_xy H_k(x, y) * conv1x1_k(Z)(x, y)`` (K x classes),
    * head confidences ``c = softmax over k of tanh(sum_xy H_k * conv1x1_conf(Z)_k)``,
    * the module's output ``o = sum_k c_k o_k`` (N, classes) and its gate score
      ``tanh(sum_k c_k sum_xy H_k * conv1x1_gate(Z)_k)`` (N, 1), which the network's softmax over
      all gate scores turns into this module's weight in the final output.
    """

    def __init__(self, channels: int, num_classes: int, heads: int = 2):
        super().__init__()
        self.heads, self.num_classes = heads, num_classes
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.mask = nn.Conv2d(channels, heads, 1)
        self.mask_softmax = nn.Softmax(dim=-1)
        self.scores = nn.Conv2d(channels, heads * num_classes, 1)
        self.conf = nn.Conv2d(channels, heads, 1)
        self.conf_tanh = nn.Tanh()
        self.conf_softmax = nn.Softmax(dim=1)
        self.gate = nn.Conv2d(channels, heads, 1)
        self.gate_tanh = nn.Tanh()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.relu(self.bn(z))
        n, k = z.shape[0], self.heads
        h = self.mask_softmax(self.mask(z).flatten(2))                       # (N, K, hw)
        o = (self.scores(z).flatten(2).view(n, k, self.num_classes, -1) * h[:, :, None]).sum(-1)
        c = self.conf_softmax(self.conf_tanh((self.conf(z).flatten(2) * h).sum(-1)))   # (N, K)
        out = (c[:, :, None] * o).sum(1)                                      # (N, classes)
        g = self.gate_tanh(((self.gate(z).flatten(2) * h).sum(-1) * c).sum(1, keepdim=True))
        return out, g


class WARN(nn.Module):
    """WARN, a wide residual network with attention (Rodriguez, Gonfaus, Cucurull, Roca, Gonzalez,
    "Attend and rectify", ECCV 2018), sized for 16-32 pixel inputs.

    Backbone: a wide ResNet (conv stem and max-pool, three groups of one pre-activation wide block,
    widths ``widths``, strides 1, 2, 2), BN-ReLU (``post``, the Grad-CAM layer), global average
    pooling and a linear classifier: the backbone's output ``o_net``. Attention modules
    (:class:`AttentionHead`) read the outputs of group 2 and group 3 (two depths). Gated
    combination: ``out = g_net * o_net + sum_l g_l * o_l`` with ``(g_net, g_1, ..)`` the softmax of
    (the backbone's gate score ``gate(GAP)``, linear, each module's gate score, in [-1, 1]): a large
    backbone score drives every attention gate to 0 and the output to the backbone's. The paper attends at
    every group of a WRN-28-10 on 32 px CIFAR images; one block per group and widths (8, 16, 32)
    keep training cheap on the CPU (measured, one thread, small scale: 16-32-64 took 96 s on
    shapes, 8-16-32 about 30 s with 0.97 test accuracy).
    """

    def __init__(self, num_classes: int, in_shape: tuple[int, int, int],
                 widths: tuple[int, int, int] = (8, 16, 32), heads: int = 2):
        super().__init__()
        c, _, _ = _check_shape(in_shape, num_classes)
        w1, w2, w3 = widths
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(c, w1, 3, padding=1, bias=False), bn=nn.BatchNorm2d(w1), relu=nn.ReLU(),
            pool=nn.MaxPool2d(2)))
        self.group1 = WideBlock(w1, w1, 1)
        self.group2 = WideBlock(w1, w2, 2)
        self.group3 = WideBlock(w2, w3, 2)
        self.post = nn.Sequential(OrderedDict(bn=nn.BatchNorm2d(w3), relu=nn.ReLU()))
        self.head = nn.Sequential(OrderedDict(
            gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(w3, num_classes)))
        self.attention2 = AttentionHead(w2, num_classes, heads)
        self.attention3 = AttentionHead(w3, num_classes, heads)
        self.gate = nn.Sequential(OrderedDict(
            gap=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(w3, 1)))
        self.gates = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z2 = self.group2(self.group1(self.stem(x)))
        z3 = self.post(self.group3(z2))
        o_net = self.head(z3)
        o2, g2 = self.attention2(z2)
        o3, g3 = self.attention3(z3)
        g = self.gates(torch.cat([self.gate(z3), g2, g3], dim=1))             # (N, 3)
        return g[:, :1] * o_net + g[:, 1:2] * o2 + g[:, 2:3] * o3
