"""Notebook 02's leakage demonstration (helpers.leakage): the table says which splits leak."""
from __future__ import annotations

import numpy as np

from helpers import leakage


def test_leakage_table_flags_the_leaky_splits():
    from helpers.stats import accuracy_report

    acc = accuracy_report(np.eye(10)[np.arange(50) % 10], np.arange(50) % 10)
    rows = [leakage.LeakageRow("random rows (prototype)", "channel traces", 10, 5, acc, False),
            leakage.LeakageRow("contiguous blocks (ours)", "events", 10, 5, acc, True)]
    df = leakage.leakage_table(rows)
    assert df["honest?"].tolist() == ["NO (leaks)", "yes"] and df["top-1"].tolist() == [1.0, 1.0]
