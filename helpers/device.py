"""Which torch device a run uses, and the backend settings that go with it (docs/DESIGN.md#training)."""
from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but no CUDA GPU is visible; use --set device=cpu "
                           "or --profile cpu")
    return torch.device(name)


def configure_backends(device: torch.device, deterministic: bool = True) -> None:
    """CPU: repeatable. CUDA: TF32 matmuls (CLIP stays float32 storage), cudnn autotuning unless determinism."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = not deterministic
