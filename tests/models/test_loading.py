"""What TextToVideoPipeline.from_pretrained refuses before it reads any weights or runs any code."""

import json
import pickle

import pytest

import t2v.models.loading
import t2v.pipelines.text_to_video
from t2v.models.loading import ModelError
from t2v.pipelines.text_to_video import TextToVideoPipeline


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Fail the test if from_pretrained gets as far as looking for the model."""

    def prepare_model_dir(model, *args, **kwargs):
        raise AssertionError(f"from_pretrained looked for the model {model}: the option was not refused first")

    monkeypatch.setattr(t2v.models.loading, "prepare_model_dir", prepare_model_dir)
    monkeypatch.setattr(t2v.pipelines.text_to_video, "prepare_model_dir", prepare_model_dir, raising=False)


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"use_safetensors": False}, "use_safetensors=False"),
        ({"trust_remote_code": True}, "trust_remote_code"),
        ({"custom_pipeline": "my_pipeline"}, "custom_pipeline"),
        ({"custom_pipeline": "my_pipeline", "trust_remote_code": False}, "custom_pipeline"),
    ],
)
def test_unsafe_options_are_refused(tmp_path, nothing_loaded, kwargs, option):
    with pytest.raises(ValueError, match=option):
        TextToVideoPipeline.from_pretrained(tmp_path / "model", **kwargs)


def test_safe_values_of_those_options_are_not_refused(tmp_path):
    # the refusal is of the unsafe values only: these reach the model check (here: no such directory)
    for kwargs in ({"use_safetensors": True}, {"trust_remote_code": False}, {"custom_pipeline": None}):
        with pytest.raises(ModelError, match="does not exist"):
            TextToVideoPipeline.from_pretrained(tmp_path / "nowhere", **kwargs)


class WouldRun:
    """Unpickling this creates a file: the proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_model_with_only_pickle_weights_is_refused_unread(tmp_path):
    model, marker = tmp_path / "model", tmp_path / "unpickled"
    model.mkdir()
    (model / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "TextToVideoSDPipeline",
                "_diffusers_version": "0.33.0",
                "unet": ["diffusers", "UNet3DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            }
        )
    )
    for name, weights in (("unet", "diffusion_pytorch_model.bin"), ("vae", "diffusion_pytorch_model.bin")):
        (model / name).mkdir()
        (model / name / "config.json").write_text("{}")
        (model / name / weights).write_bytes(pickle.dumps(WouldRun(marker)))
    refused = r"only pickle-based weights \(diffusion_pytorch_model\.bin\).*never unpickles"
    with pytest.raises(ValueError, match=refused):
        TextToVideoPipeline.from_pretrained(model)
    with pytest.raises(ValueError, match="only pickle-based weights"):
        TextToVideoPipeline.from_pretrained(model, use_safetensors=True)
    assert not marker.exists()
