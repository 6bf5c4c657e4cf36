"""The embedded models' files as shipped in the package: cheap checks that load no weights."""

import json

import pytest
from safetensors import safe_open

from t2v.models.loading import DEFAULT_EDIT_MODEL_DIR, DEFAULT_IMAGE_MODEL_DIR, DEFAULT_MODEL_DIR, inspect_model_dir


MODELS = {
    "text-to-video": DEFAULT_MODEL_DIR,
    "text-to-image": DEFAULT_IMAGE_MODEL_DIR,
    "image-edit": DEFAULT_EDIT_MODEL_DIR,
}


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def shipped_files(root=DEFAULT_MODEL_DIR):
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    "kind, cls",
    [
        ("text-to-video", "TextToVideoSDPipeline"),
        ("text-to-image", "StableDiffusionPipeline"),
        ("image-edit", "StableDiffusionInstructPix2PixPipeline"),
    ],
)
def test_the_embedded_models_ship_in_the_package(kind, cls):
    info = inspect_model_dir(MODELS[kind], kind=kind)
    assert info.pipeline_class == cls and info.meta["text_encoder"] == "minilm"
    assert (MODELS[kind] / "MODEL_CARD.md").is_file()


@pytest.mark.parametrize("root", MODELS.values(), ids=MODELS)
def test_no_pickle_and_no_code(root):
    files = shipped_files(root)
    assert any(p.suffix == ".safetensors" for p in files)
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
    assert not [p for p in files if p.suffix in (".py", ".pyc", ".so")]


def test_package_size():
    size = sum(p.stat().st_size for p in shipped_files(DEFAULT_MODEL_DIR))
    assert size < 40e6, f"the embedded video model is {size / 1e6:.1f} MB"
    size = sum(p.stat().st_size for p in shipped_files(DEFAULT_IMAGE_MODEL_DIR))
    assert size < 15e6, f"the embedded picture model is {size / 1e6:.1f} MB"
    size = sum(p.stat().st_size for p in shipped_files(DEFAULT_EDIT_MODEL_DIR))
    assert size < 15e6, f"the embedded edit model is {size / 1e6:.1f} MB"


@pytest.mark.parametrize("root", MODELS.values(), ids=MODELS)
def test_json_files_are_valid_and_components_match_the_index(root):
    for path in root.rglob("*.json"):
        json.loads(path.read_text())  # raises on a broken file
    index = json.loads((root / "model_index.json").read_text())
    scheduler = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == index["scheduler"][1]
    for name in ("unet", "vae"):  # the weights shipped in the package (the text encoder comes from its own)
        config = json.loads((root / name / "config.json").read_text())
        assert config["_class_name"] == index[name][1], name
        weights = list((root / name).glob("*.safetensors"))
        assert len(weights) == 1, weights
        with safe_open(weights[0], "pt") as f:  # reads the header only
            assert len(f.keys()) > 0, weights[0]
