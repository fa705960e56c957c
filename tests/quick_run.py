"""One in-process run for tests: prepare the data file, train the config, evaluate the test block (no figures)."""
from helpers.pipeline import build_trainer, evaluate_trainer, load_semantic, prepare_data, train_data


def train_and_evaluate(cfg, data_path, out_dir, judge):
    """``(prepared, metrics)`` of ``cfg`` trained on ``data_path``; the session's judge referees."""
    prepared = prepare_data(cfg, data_path)
    semantic = load_semantic(cfg)
    trainer = build_trainer(cfg, semantic, None)
    trainer.fit(*train_data(prepared), progress=False)
    metrics = evaluate_trainer(trainer, prepared, semantic, out_dir, judge=judge, figures=False,
                               n_permutations=200, log=lambda *_: None)
    return prepared, metrics
