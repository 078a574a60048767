"""The Markdown tables of pkg-scripts/bench-peers.sh and bench-burn-versions.sh from their
tagged JSON lines.

usage: bench_peers_table.py RESULTS MODE(steps|ops|burn) CAPTION
"""

import json
import sys


def span(values):
    lo, hi = min(values), max(values)
    return f"{lo:.0f}-{hi:.0f}" if round(lo) != round(hi) else f"{lo:.0f}"


def steps_table(rows):
    """Throughput per preset and step: ranges over the rounds, and the per-round ratio."""
    print("| preset | step | `atd bench` | PyTorch | ratio |")
    print("|---|---|---|---|---|")
    steps = [("train", "training step (images/s)"), ("pgd", "PGD step (image-steps/s)"), ("forward", "forward (images/s)")]
    for arch in ("small", "wide"):
        ours = [r for r in rows if r["who"] == "atd" and r["arch"] == arch]
        theirs = [r for r in rows if r["who"] == "torch" and r["arch"] == arch]
        for key, label in steps:
            a, t = [r[key] for r in ours], [r[key] for r in theirs]
            ratios = [x / y for x, y in zip(a, t)]
            print(f"| {arch} | {label} | {span(a)} | {span(t)} | {min(ratios):.2f}-{max(ratios):.2f}x |")


def ops_table(rows):
    """ms per call of each convolution, best of the rounds: Burn's flex op, atd-train's own
    (`atd_train::conv`, what the models run) and PyTorch's."""
    keys = ("forward", "input_gradient", "weight_gradient")
    who = {"flex": lambda r: r.get("implementation") == "flex",
           "atd": lambda r: r.get("implementation") == "atd",
           "torch": lambda r: r["who"] == "torch"}
    print("| convolution | forward ms: flex / atd / PyTorch | input gradient | weight gradient |")
    print("|---|---|---|---|")
    totals = {name: [0.0] * 3 for name in who}
    for layer in dict.fromkeys(r["layer"] for r in rows):
        cells = []
        for i, key in enumerate(keys):
            best = {name: min(r[key] for r in rows if pick(r) and r["layer"] == layer) for name, pick in who.items()}
            for name in who:
                totals[name][i] += best[name]
            cells.append(f"{best['flex']:.2f} / {best['atd']:.2f} / {best['torch']:.2f}")
        print(f"| {layer} | " + " | ".join(cells) + " |")
    cells = [f"**{totals['flex'][i]:.1f} / {totals['atd'][i]:.1f} / {totals['torch'][i]:.1f}**" for i in range(3)]
    print("| **all eleven** | " + " | ".join(cells) + " |")


def burn_table(rows):
    """Throughput per preset and step of `atd bench` (atd-train's kernels on flex) and of the same
    presets on Burn's own modules at each Burn version: ranges over the rounds, and each one's
    per-round ratio to `atd bench`."""
    versions = [w for w in dict.fromkeys(r["who"] for r in rows) if w != "atd"]
    print("| preset | step | `atd bench` | " + " | ".join(f"Burn's ops, flex {v}" for v in versions) + " |")
    print("|---|---|---|" + "---|" * len(versions))
    for arch in ("small", "wide"):
        ours = [r for r in rows if r["who"] == "atd" and r["arch"] == arch]
        for key, label in [("train", "training step (images/s)"), ("pgd", "PGD step (image-steps/s)")]:
            a = [r[key] for r in ours]
            cells = []
            for v in versions:
                t = [r[key] for r in rows if r["who"] == v and r["arch"] == arch]
                ratios = [y / x for x, y in zip(a, t)]
                cells.append(f"{span(t)} ({min(ratios):.2f}-{max(ratios):.2f}x)")
            print(f"| {arch} | {label} | {span(a)} | " + " | ".join(cells) + " |")


def main():
    path, mode, caption = sys.argv[1:]
    rows = [json.loads(line) for line in open(path)]
    print(caption + "\n")
    {"steps": steps_table, "ops": ops_table, "burn": burn_table}[mode](rows)


if __name__ == "__main__":
    main()
