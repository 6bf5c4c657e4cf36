"""Model directories move both ways between t2v and diffusers' TextToVideoSDPipeline, with identical frames."""

import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, TextToVideoSDPipeline

from t2v.models.loading import save_model
from t2v.pipelines.text_to_video import load_pipeline


ARGS = {"num_frames": 3, "num_inference_steps": 3, "height": 32, "width": 32}


def diffusers_frames(pipe, prompt, seed):
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt, **ARGS, generator=torch.Generator().manual_seed(seed), output_type="np").frames


@pytest.mark.parametrize("encoder,vae", [("clip", "kl"), ("bert", "kl"), ("bert", "tiny")])
@pytest.mark.parametrize("scheduler", ["ddim", "dpm++", "euler-a"])
def test_t2v_directory_loads_in_diffusers_with_same_frames(tmp_path, encoder, vae, scheduler):
    from tiny import tiny_pipeline

    ours = tiny_pipeline(tmp_path, encoder, vae)
    ours.set_scheduler(scheduler)
    path = save_model(ours, tmp_path / "model")
    assert json.loads((path / "model_index.json").read_text())["_class_name"] == "TextToVideoSDPipeline"

    theirs = DiffusionPipeline.from_pretrained(path)
    assert isinstance(theirs, TextToVideoSDPipeline)
    expected = diffusers_frames(theirs, "a red circle moving right", seed=5)
    got = ours("a red circle moving right", **ARGS, seed=5).frames
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_diffusers_directory_loads_in_t2v_with_same_frames(tmp_path):
    from tiny import tiny_pipeline

    parts = tiny_pipeline(tmp_path, "clip").components
    theirs = TextToVideoSDPipeline(**parts)
    theirs.save_pretrained(tmp_path / "from-diffusers")
    expected = diffusers_frames(theirs, "a blue square", seed=7)

    ours = load_pipeline(tmp_path / "from-diffusers", device="cpu")
    ours.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(ours("a blue square", **ARGS, seed=7).frames, expected, atol=1e-5)
