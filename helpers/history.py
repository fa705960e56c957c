"""A run's training history: history.json / history.csv and the one log line per epoch.

See docs/DESIGN.md#run-folder-and-checkpoints and docs/DESIGN.md#logging-warnings-and-progress-bars.
"""
from __future__ import annotations

import math
from pathlib import Path

from helpers.atomic import write_json_atomic, write_text_atomic


def write_history(history: list[dict], out_dir: str | Path) -> None:
    """history.json and history.csv (one row per epoch, one column per loss term), written atomically."""
    import pandas as pd

    out_dir = Path(out_dir)
    # A term left out of the loss (weight 0, or adv/disc in the warm-up) is NaN in memory; strict JSON has no NaN,
    # so it becomes null.
    plain = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
             for row in history]
    write_json_atomic(out_dir / "history.json", plain, indent=1)
    write_text_atomic(out_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))


def epoch_line(row: dict, epochs: int) -> str:
    """One log line per epoch: the weighted total, the validation numbers, the time."""
    parts = [f"epoch {row['epoch']}/{epochs}: total {row.get('train_total', float('nan')):.4f}"]
    for key, name in (("val_clip", "val 1-cos"), ("val_semantic_top1", "val semantic top-1"),
                      ("val_label_head_top1", "val label-head top-1")):
        if key in row:
            parts.append(f"{name} {row[key]:.3f}")
    return ", ".join(parts) + f" ({row.get('seconds', 0):.0f} s)"
