"""The Markdown tables of pkg-scripts/bench-peers.sh from its tagged JSON lines.

usage: bench_peers_table.py RESULTS OPS(true|false) CAPTION
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


def main():
    path, ops, caption = sys.argv[1:]
    rows = [json.loads(line) for line in open(path)]
    print(caption + "\n")
    (ops_table if ops == "true" else steps_table)(rows)


if __name__ == "__main__":
    main()
