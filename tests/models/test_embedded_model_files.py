"""The embedded default model's files as shipped in the package: cheap checks that load no weights."""

import json

from safetensors import safe_open

from t2v.models.loading import DEFAULT_MODEL_DIR, inspect_model_dir


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def shipped_files():
    return [p for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file()]


def test_the_default_model_ships_in_the_package():
    info = inspect_model_dir(DEFAULT_MODEL_DIR)
    assert info.pipeline_class == "TextToVideoSDPipeline" and info.meta["text_encoder"] == "minilm"
    assert (DEFAULT_MODEL_DIR / "MODEL_CARD.md").is_file()


def test_no_pickle_and_no_code():
    files = shipped_files()
    assert any(p.suffix == ".safetensors" for p in files)
    assert not [p for p in files if p.suffix in PICKLE_SUFFIXES]
    assert not [p for p in files if p.suffix in (".py", ".pyc", ".so")]


def test_package_size():
    size = sum(p.stat().st_size for p in shipped_files())
    assert size < 40e6, f"the embedded model is {size / 1e6:.1f} MB"


def test_json_files_are_valid_and_components_match_the_index():
    for path in DEFAULT_MODEL_DIR.rglob("*.json"):
        json.loads(path.read_text())  # raises on a broken file
    index = json.loads((DEFAULT_MODEL_DIR / "model_index.json").read_text())
    scheduler = json.loads((DEFAULT_MODEL_DIR / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == index["scheduler"][1]
    for name in ("unet", "vae"):  # the weights shipped in the package (the text encoder comes from its own)
        config = json.loads((DEFAULT_MODEL_DIR / name / "config.json").read_text())
        assert config["_class_name"] == index[name][1], name
        weights = list((DEFAULT_MODEL_DIR / name).glob("*.safetensors"))
        assert len(weights) == 1, weights
        with safe_open(weights[0], "pt") as f:  # reads the header only
            assert len(f.keys()) > 0, weights[0]
