"""PyTorch twin of `atd bench`: the same pre-activation ResNet presets, batch, threads and steps.

Prints one JSON line per preset: {"arch", "batch", "threads", "train", "pgd", "forward"} with
images/s for a training step (forward, backward, nesterov SGD with weight decay), image-steps/s
for a PGD step (eval-mode forward plus the input gradient of the summed cross-entropy) and
images/s for an eval-mode forward. With --ops, instead, one JSON line per convolution of the
small preset: ms per call of its forward, input gradient and weight gradient, as the example
`conv_ops` of atd-train times them in Burn. Run by pkg-scripts/bench-peers.sh; not part of the
tests.
"""

import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {"small": [16, 32, 64, 128], "wide": [32, 64, 128, 256]}
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)


class PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        pre = F.relu(self.bn0(x))
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        return self.conv2(F.relu(self.bn1(out))) + shortcut


class PreActResNet(nn.Module):
    """atd-train's PreActResNet (one block per stage, 1x1 shortcuts) with its 10-class head."""

    def __init__(self, widths):
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR10_STD).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        blocks, cin = [], widths[0]
        for stage, width in enumerate(widths):
            blocks.append(PreActBlock(cin, width, 1 if stage == 0 else 2))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.final_bn = nn.BatchNorm2d(cin)
        self.classifier = nn.Linear(cin, 10)

    def forward(self, x):
        out = self.blocks(self.stem((x - self.mean) / self.std))
        return self.classifier(F.relu(self.final_bn(out)).mean(dim=(2, 3)))


def timed(iterations, step):
    """Seconds for `iterations` calls of `step` after one warm-up call (as `atd bench`)."""
    step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return time.perf_counter() - start


def measure(arch, batch, iterations):
    torch.manual_seed(0)
    model = PreActResNet(PRESETS[arch])
    optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.rand(batch, 3, 32, 32)
    labels = torch.randint(0, 10, (batch,))

    def train_step():
        optim.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
        optim.step()

    model.train()
    train = timed(iterations, train_step)

    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def pgd_step():
        leaf = x.clone().requires_grad_(True)
        F.cross_entropy(model(leaf), labels, reduction="sum").backward()
        return leaf.grad.sum().item()

    pgd = timed(iterations, pgd_step)

    def forward_step():
        with torch.no_grad():
            return model(x).sum().item()

    forward = timed(iterations, forward_step)
    images = batch * iterations
    return {"train": images / train, "pgd": images / pgd, "forward": images / forward}


# (input channels, output channels, input size, kernel, stride, padding): as conv_ops.rs.
SMALL_PRESET_CONVS = [
    (3, 16, 32, 3, 1, 1), (16, 16, 32, 3, 1, 1), (16, 32, 32, 3, 2, 1), (32, 32, 16, 3, 1, 1),
    (16, 32, 32, 1, 2, 0), (32, 64, 16, 3, 2, 1), (64, 64, 8, 3, 1, 1), (32, 64, 16, 1, 2, 0),
    (64, 128, 8, 3, 2, 1), (128, 128, 4, 3, 1, 1), (64, 128, 8, 1, 2, 0),
]


def measure_convs(batch, iterations):
    """The convolution calls autograd makes, each alone (torch.ops.aten.convolution_backward)."""
    torch.manual_seed(0)
    for cin, cout, size, kernel, stride, padding in SMALL_PRESET_CONVS:
        x = torch.rand(batch, cin, size, size) - 0.5
        w = torch.rand(cout, cin, kernel, kernel) - 0.5
        out = (size + 2 * padding - kernel) // stride + 1
        upstream = torch.rand(batch, cout, out, out) - 0.5

        def backward(mask):
            return torch.ops.aten.convolution_backward(
                upstream, x, w, None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], 1, mask)

        with torch.no_grad():
            forward = timed(iterations, lambda: F.conv2d(x, w, None, stride, padding).sum().item())
            input_gradient = timed(iterations, lambda: backward([True, False, False])[0].sum().item())
            weight_gradient = timed(iterations, lambda: backward([False, True, False])[1].sum().item())
        line = {"layer": f"{cin}->{cout} {size}x{size} k{kernel} s{stride}", "batch": batch}
        for name, seconds in [("forward", forward), ("input_gradient", input_gradient), ("weight_gradient", weight_gradient)]:
            line[name] = seconds * 1e3 / iterations
        print(json.dumps(line), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=sorted(PRESETS), action="append")
    parser.add_argument("--ops", action="store_true", help="time each convolution of the small preset instead")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.ops:
        measure_convs(args.batch, args.iterations)
        return
    if not args.arch:
        parser.error("--arch or --ops is required")
    for arch in args.arch:
        result = measure(arch, args.batch, args.iterations)
        print(json.dumps({"arch": arch, "batch": args.batch, "threads": args.threads, **result}), flush=True)


if __name__ == "__main__":
    main()
