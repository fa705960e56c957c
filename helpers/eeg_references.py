"""The field's own EEG decoders beside ours: braindecode's EEGNet and ShallowFBCSPNet on the same split.

The linear baseline (helpers.baseline) reads the digit from our 264 features. These two networks read the
signal the features start from (``FeaturePipeline.windows``: 14 channels, band-passed, the first second after
onset at 128 Hz, standardised with the training events' channel statistics) and learn their own filters, so
the pair answers a reader's question: do the features lose what a deep EEG network would find?

Rules, the same as for every number in metrics.json (docs/DESIGN.md#deep-eeg-references):
- the very train / validation / test events of the generator (the kept events of ``PreparedData``);
- standardisation from the training events only (the feature pipeline's fitted channel statistics);
- early stopping on validation accuracy only: the weights of the best validation epoch are kept, the test
  events are scored once at the end;
- seeded: one torch generator for initialisation and shuffling, so a run is repeatable on one machine.
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from helpers.stimuli import N_DIGITS

# metrics.json name -> (braindecode class name, learning rate). EEGNet: Adam at 1e-3 as in Lawhern et al. (2018);
# ShallowFBCSPNet: braindecode's recommended 0.0625 * 0.01 (Schirrmeister et al. 2017, AdamW).
REFERENCE_MODELS = {"eegnet": ("EEGNet", 1e-3), "shallow_fbcsp": ("ShallowFBCSPNet", 0.0625 * 0.01)}
REFERENCE_LABELS = {"eegnet": "EEGNet (1-s signal)", "shallow_fbcsp": "ShallowFBCSPNet (1-s signal)"}  # figures
BATCH_SIZE = 64
PATIENCE = 10  # epochs without a better validation accuracy before stopping


@dataclass
class ReferenceResult:
    """One network's test scores and how it was trained."""
    name: str
    model: str
    scores: np.ndarray   # [n_test, 10] softmax probabilities
    val_top1: float
    best_epoch: int      # 1-based epoch whose weights were kept (0: the untrained network was best)
    epochs_trained: int
    max_epochs: int
    seconds: float

    def to_dict(self) -> dict:
        return {"model": f"braindecode.models.{self.model}", "val_top1": float(self.val_top1),
                "best_epoch": int(self.best_epoch), "epochs_trained": int(self.epochs_trained),
                "max_epochs": int(self.max_epochs), "seconds": round(float(self.seconds), 2),
                "early_stopping": f"best validation top-1, patience {PATIENCE}"}


def build_model(name: str, n_chans: int, n_times: int) -> torch.nn.Module:
    """A braindecode network by its metrics.json name (``eegnet`` or ``shallow_fbcsp``)."""
    if name not in REFERENCE_MODELS:
        raise ValueError(f"unknown reference model {name!r}; choose one of {', '.join(REFERENCE_MODELS)}")
    # braindecode 1.8.1 warns about MNE montage names and its own parameter renames, none of which this uses.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import braindecode.models as bd

        return getattr(bd, REFERENCE_MODELS[name][0])(n_chans=n_chans, n_outputs=N_DIGITS, n_times=n_times)


@torch.no_grad()
def _predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat([F.softmax(model(x[i:i + 512].to(dev)), dim=1).cpu() for i in range(0, len(x), 512)])


def train_reference(name: str, x_train, y_train, x_val, y_val, x_test, *, max_epochs: int,
                    seed: int = 0, device: str | torch.device = "cpu") -> ReferenceResult:
    """Train ``name`` on ``(x_train, y_train)`` [n, channels, times] with early stopping on the validation
    events; return its softmax scores on ``x_test``. Deterministic for a given seed on one machine (CPU)."""
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
    xs = [torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in (x_train, x_val, x_test)]
    if any(a.ndim != 3 for a in xs) or len({a.shape[1:] for a in xs}) != 1:
        raise ValueError(f"train/val/test windows must be [n, channels, times] of one shape; got "
                         f"{[tuple(a.shape) for a in xs]}")
    if len(xs[1]) == 0:
        raise ValueError("early stopping needs validation events; the validation block is empty")
    x_tr, x_va, x_te = xs
    y_tr = torch.as_tensor(np.asarray(y_train, dtype=np.int64))
    y_va = np.asarray(y_val, dtype=np.int64)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(name, x_tr.shape[1], x_tr.shape[2]).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=REFERENCE_MODELS[name][1], weight_decay=0.0)
        gen = torch.Generator().manual_seed(seed)
        best_acc = float((_predict(model, x_va).argmax(1).numpy() == y_va).mean())
        best_state, best_epoch, epoch = copy.deepcopy(model.state_dict()), 0, 0
        for epoch in range(1, max_epochs + 1):
            model.train()
            order = torch.randperm(len(x_tr), generator=gen)
            for i in range(0, len(order), BATCH_SIZE):
                b = order[i:i + BATCH_SIZE]
                if len(b) < 2:  # batch norm needs two samples
                    continue
                loss = F.cross_entropy(model(x_tr[b].to(device)), y_tr[b].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            acc = float((_predict(model, x_va).argmax(1).numpy() == y_va).mean())
            if acc > best_acc:
                best_acc, best_state, best_epoch = acc, copy.deepcopy(model.state_dict()), epoch
            elif epoch - best_epoch >= PATIENCE:
                break
        model.load_state_dict(best_state)
        scores = _predict(model, x_te).double().numpy()
    return ReferenceResult(name=name, model=REFERENCE_MODELS[name][0], scores=scores, val_top1=best_acc,
                           best_epoch=best_epoch, epochs_trained=epoch, max_epochs=max_epochs,
                           seconds=time.perf_counter() - t0)


def train_references(prepared, max_epochs: int, seed: int = 0, names=tuple(REFERENCE_MODELS),
                     device: str | torch.device = "cpu") -> dict:
    """``{name: ReferenceResult}`` for a run's ``PreparedData``: the kept train / validation / test events of the
    generator's own split, read through its fitted feature pipeline (training statistics only)."""
    pipe, digits = prepared.features, prepared.digits
    sets = [pipe.windows(digits, s.indices) for s in (prepared.train, prepared.val, prepared.test)]
    return {name: train_reference(name, sets[0], prepared.train.labels, sets[1], prepared.val.labels, sets[2],
                                  max_epochs=max_epochs, seed=seed, device=device)
            for name in names}
