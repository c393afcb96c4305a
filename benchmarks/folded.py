"""Summarise a py-spy profile in folded form (``run.py --profile DIR`` writes them).

``python -m benchmarks.folded DIR/memory-card-closed-0-0.folded`` prints the share of
samples each function is on the stack for (inclusive) and on top of it (self).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def summarise(path: Path, top: int = 40) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return f"{path}: no samples"
    lines = [f"{path}: {total} samples", "", "inclusive:"]
    lines += [f"{n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.folded", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    for path in args.files:
        print(summarise(path, args.top))
        print()


if __name__ == "__main__":
    main()
