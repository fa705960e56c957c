"""The tables and numbers of notebooks 03-05 (helpers.nbtables): one semantic gradient step, metrics.json's table."""
from __future__ import annotations

import pytest
import torch

from helpers import nbtables
from helpers.config import make_config


def test_semantic_gradient_step_reaches_encoder_and_generator_scales_with_lambda_and_never_touches_clip():
    from helpers.models import build_models
    from helpers.pipeline import load_semantic

    config = make_config("ci", {"feature_dim": 16})
    semantic = load_semantic(config)
    enc, gen, _ = build_models(config)
    before = [p.detach().clone() for p in [*enc.parameters(), *gen.parameters()]]
    x = torch.randn(4, 16)
    emb = semantic.embeddings.embeddings
    off, one, five = (nbtables.semantic_gradient_step(enc, gen, semantic.clip, emb, x, [0, 1, 2, 3], lr=1e-3,
                                                lambda_clip=v) for v in (0.0, 1.0, 5.0))
    for out in (one, five):
        assert out["generator_grad_norm"] > 0 and out["encoder_grad_norm"] > 0
        assert out["semantic_loss_before"] != out["semantic_loss_after"]
    for out in (off, one, five):
        assert out["clip_params_with_grad"] == 0 and out["clip_weights_unchanged"] is True
    # The gradient is proportional to lambda_clip and exactly 0 at 0 (then nothing moves).
    assert off["generator_grad_norm"] == 0 and off["encoder_grad_norm"] == 0
    assert off["semantic_loss_after"] == off["semantic_loss_before"]
    assert five["generator_grad_norm"] == pytest.approx(5 * one["generator_grad_norm"], rel=1e-4)
    assert five["encoder_grad_norm"] == pytest.approx(5 * one["encoder_grad_norm"], rel=1e-4)
    # Every call works on copies, so each starts from the same point and the caller's networks stay as they were.
    assert one["semantic_loss_before"] == five["semantic_loss_before"]
    assert all(torch.equal(a, p) for a, p in zip(before, [*enc.parameters(), *gen.parameters()]))
    with pytest.raises(ValueError, match="lambda_clip"):
        nbtables.semantic_gradient_step(enc, gen, semantic.clip, emb, x, [0, 1, 2, 3], lambda_clip=-1.0)


def test_metrics_table_puts_each_number_next_to_chance():
    m = {"n_test_events": 100, "semantic_top1": 0.35, "semantic_top1_ci95": [0.26, 0.45],
         "semantic_top1_p_value": 0.001, "semantic_top3": 0.6, "judge_top1": 0.12,
         "judge_top3": 0.4, "linear_baseline_top1": 0.4, "chance_top1": 0.1, "chance_top3_upper95": 0.38,
         "chance_top1_upper95": 0.16, "clip_semantic": False, "oracle_top1": 0.6}
    df = nbtables.metrics_table(m).set_index("metric")
    assert df.loc["semantic_top1", "verdict"] == "above chance"
    assert df.loc["semantic_top1", "95% CI"] == "0.260-0.450" and df.loc["semantic_top1", "permutation p"] == 0.001
    assert df.loc["judge_top1", "verdict"] == "within chance"
    assert df.loc["judge_top3", "verdict"] == "above chance" and df.loc["semantic_top3", "verdict"] == "above chance"
    assert df.loc["linear_baseline_top1", "value"] == 0.4 and df.loc["oracle_top1", "value"] == 0.6
    assert df.loc["oracle_top1", "verdict"] == "" and "ssim_mean" not in df.index
    assert df.loc["judge_top1", "compare with"] == "chance 0.10 (upper 95% 0.160)"
    assert "oracle_top1" not in nbtables.metrics_table({k: v for k, v in m.items() if k != "oracle_top1"})["metric"].tolist()
