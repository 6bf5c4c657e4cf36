import os
import sys
from pathlib import Path

import pytest
import torch


sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test downloads anything
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tiny import tiny_pipeline  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def pipe(tmp_path):
    return tiny_pipeline(tmp_path, "clip")


@pytest.fixture
def bert_pipe(tmp_path):
    return tiny_pipeline(tmp_path, "bert")


@pytest.fixture
def model_dir(tmp_path, bert_pipe):
    """A tiny model saved by t2v in diffusers layout."""
    from t2v.models.loading import save_model

    return save_model(bert_pipe, tmp_path / "tiny-model")
