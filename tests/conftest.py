"""Shared fixtures: the judge is trained once per test session, not once per test."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def judge_dir(tmp_path_factory):
    """A folder holding a trained judge cache; copy its files into a run's models/ to reuse it."""
    from helpers.judge import load_or_train_judge

    d = tmp_path_factory.mktemp("judge")
    load_or_train_judge(d)
    return d


@pytest.fixture(scope="session")
def judge(judge_dir):
    from helpers.judge import load_or_train_judge

    return load_or_train_judge(judge_dir)
