"""Two processes against one: compare the adapters and heads of two RL runs at a checkpoint.

    python bench/rl_two_vs_one.py two one [step-000002]

Prints, per tensor file (``policy/adapter_model.safetensors``, ``head.safetensors``), the largest
|a - b| and, per head tensor, its median and the share of entries that differ by more than 1e-6.
The head's output bias has no true gradient (Plackett-Luce is unchanged by a constant added to
every score), so AdamW turns the float rounding left in it into steps of about ``lr_head``: it is
listed, but it cannot change a ranking.
"""

from __future__ import annotations

import sys
from pathlib import Path

from safetensors.torch import load_file


def main(a_dir: str, b_dir: str, step: str = "step-000002") -> None:
    for rel in ("policy/adapter_model.safetensors", "head.safetensors"):
        a = load_file(str(Path(a_dir) / "checkpoints" / step / rel))
        b = load_file(str(Path(b_dir) / "checkpoints" / step / rel))
        if a.keys() != b.keys():
            raise SystemExit(f"{rel}: different tensors")
        diffs = {k: (a[k].double() - b[k].double()).abs() for k in a}
        worst = max(diffs, key=lambda k: float(diffs[k].max()))
        print(f"{rel}: {len(a)} tensors, max |a - b| = {float(diffs[worst].max()):.3g} ({worst}), "
              f"largest |value| {max(float(v.abs().max()) for v in a.values()):.3g}")
        if rel == "head.safetensors":
            for k, d in diffs.items():
                print(f"  {k} {tuple(a[k].shape)}: max {float(d.max()):.2e}, median {float(d.median()):.2e}, "
                      f"share > 1e-6 {float((d > 1e-6).double().mean()):.3f}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(*sys.argv[1:4])
