"""Video in, video out: the jobs behind `t2v edit` (Video Instruct-Pix2Pix) and `t2v control` (ControlNet video).

As `t2v zero` (t2v.zero_shot): the request's own rules are checked before anything loads, then the source
is read (a bad source is one line that names the file), the model's recommended settings
(`ImageModelDefaults`) fill what is not given, and nothing is written until the frames exist.

- Edit: an Instruct-Pix2Pix model (the embedded t2v-shapes-edit by default) edits the source video by an
  instruction (`t2v.pipelines.video_instruct_pix2pix`).
- Control: a text-to-image model (the embedded t2v-shapes-image by default) and a diffusers ControlNetModel
  make a video that follows control maps (edges, depth or pose) of the source (`t2v.pipelines.control_video`,
  `t2v.controls`).

The source frames are cut to `num_frames` (default: all, up to MAX_SOURCE_FRAMES) and resized to the
output size (default: the model's) before anything is made of them; the output's fps defaults to the
source's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from t2v.controls import canny_maps, depth_maps, draw_pose_maps, load_depth_model, read_openpose_json
from t2v.models.defaults import PromptWarning
from t2v.models.loading import (
    DEFAULT_EDIT_MODEL_NAME,
    PICKLE_SUFFIXES,
    ModelError,
    embedded_controlnet,
    parse_dtype,
    pick_device,
    quiet,
)
from t2v.pipelines.control_video import ControlVideoPipeline, chunks
from t2v.pipelines.long_video.storyboard import MAX_LONG_FRAMES, excerpt
from t2v.pipelines.schedulers import make_scheduler
from t2v.pipelines.video_instruct_pix2pix import VideoInstructPix2PixPipeline
from t2v.request import MAX_GUIDANCE, RequestError
from t2v.video_io import DEFAULT_FPS, check_output_path, read_video, write_video
from t2v.zero_shot import ImageRequest, ImageResult, get_image_pipeline


CONTROL_KINDS = ("edges", "depth", "pose")
MAX_SOURCE_FRAMES = MAX_LONG_FRAMES  # frames taken from a source when num_frames is not given


def _is_number(value) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return isinstance(value, int) or math.isfinite(value)  # (math.isfinite overflows on a 400-digit integer)


def _check_scale(name: str, value) -> None:
    if value is not None and (not _is_number(value) or not 0 <= value <= MAX_GUIDANCE):
        raise RequestError(name, f"{name} must be a number in [0, {MAX_GUIDANCE:g}], got {excerpt(value)}")


def _check_video(req) -> None:
    """What edit and control requests share: a source, and a chunk size that holds frame 0 and another."""
    if req.source is None or not isinstance(req.source, (str, Path)) or not str(req.source).strip():
        raise RequestError("source", f"a source video is required, got {excerpt(req.source)}")
    size = req.chunk_size
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 2 <= size <= MAX_LONG_FRAMES):
        raise RequestError(
            "chunk_size",
            f"chunk_size must be an integer in [2, {MAX_LONG_FRAMES}] (frame 0 and new ones), got {excerpt(size)}",
        )


@dataclass(frozen=True)
class EditRequest(ImageRequest):
    """A video edited by an instruction (`prompt`): the source frames, cut to num_frames and resized to
    height x width. None means: the model's default (the source's for num_frames and fps)."""

    source: Path | str | None = None
    image_guidance_scale: float | None = None
    num_frames: int | None = None
    chunk_size: int | None = None
    shared_noise: bool | None = None
    fps: float | None = None

    def check(self):
        try:
            super().check()
        except RequestError as e:  # the edit's prompt is an instruction
            if e.field != "prompt":
                raise
            raise RequestError("prompt", str(e).replace("prompt", "instruction", 1)) from None
        _check_video(self)
        _check_scale("image_guidance_scale", self.image_guidance_scale)
        if self.shared_noise is not None and not isinstance(self.shared_noise, bool):
            raise RequestError("shared_noise", f"shared_noise must be true or false, got {excerpt(self.shared_noise)}")
        return self

    def resolve(self, pipe):
        req = super().resolve(pipe)
        given, d = req.image_guidance_scale, pipe.defaults
        return dataclasses.replace(
            req,
            image_guidance_scale=float(d.image_guidance_scale if given is None else given),
            shared_noise=d.shared_noise if req.shared_noise is None else req.shared_noise,
        )


@dataclass(frozen=True)
class ControlRequest(ImageRequest):
    """A video that follows control maps of `kind` (edges, depth, pose) of the source. as_map: the source
    already is a video of control maps. controlnet: a diffusers ControlNetModel folder. save_control: where
    to write the maps the model was conditioned on. depth_model: a transformers depth-estimation model folder
    (depth from a normal video). pose_size: (width, height), the pixels of an OpenPose JSON source (default:
    the output's). None means: the model's default (the source's for num_frames and fps)."""

    kind: str | None = None
    source: Path | str | None = None
    controlnet: Path | str | None = None
    conditioning_scale: float | None = None
    as_map: bool = False
    save_control: Path | None = None
    depth_model: Path | str | None = None
    pose_size: tuple[int, int] | None = None
    num_frames: int | None = None
    chunk_size: int | None = None
    fps: float | None = None

    def check(self):
        super().check()
        if self.kind not in CONTROL_KINDS:
            raise RequestError("kind", f"unknown control kind {excerpt(self.kind)}; choose one of: edges, depth, pose")
        _check_video(self)
        _check_scale("conditioning_scale", self.conditioning_scale)
        if not isinstance(self.as_map, bool):
            raise RequestError("as_map", f"as_map must be true or false, got {excerpt(self.as_map)}")
        if self.pose_size is not None:
            size = self.pose_size
            if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(_is_count(v) for v in size):
                raise RequestError("pose_size", f"pose_size must be two integers W H > 0, got {excerpt(size)}")
            if self.kind != "pose" or self.as_map:
                raise RequestError("pose_size", "pose_size is for poses from OpenPose JSON (kind pose, no --as-map)")
        if self.depth_model is not None and (self.kind != "depth" or self.as_map):
            raise RequestError("depth_model", "depth_model is for depth from a normal video (kind depth, no --as-map)")
        controlnet = self.controlnet
        if controlnet is None:  # the embedded text-to-image model's own, where one is installed
            controlnet = embedded_controlnet(self.kind) if self.model is None else None
            if controlnet is None:
                why = "the embedded model has none installed" if self.model is None else "the model is not embedded"
                raise RequestError("controlnet", f"no {self.kind} ControlNet to use ({why}); pass --controlnet DIR")
        if self.kind == "depth" and not self.as_map and self.depth_model is None:
            raise RequestError(
                "depth_model",
                "depth from a normal video needs --depth-model DIR (a transformers depth-estimation model folder), "
                "or pass a video of depth maps with --as-map",
            )
        return dataclasses.replace(self, controlnet=controlnet)

    def resolve(self, pipe):
        req = super().resolve(pipe)
        scale = 1.0 if req.conditioning_scale is None else float(req.conditioning_scale)
        return dataclasses.replace(req, conditioning_scale=scale)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass
class VideoResult(ImageResult):
    """What was written: the video (and, for control, the maps it followed: `controls`, uint8 [F, H, W, 3],
    written to `control_path` when asked)."""

    controls: np.ndarray | None = None
    control_path: Path | None = None


# ---------------------------------------------------------------- sources
def _source_error(path, error: Exception) -> RequestError:
    """A bad source as one line that names the file."""
    message = " ".join(str(error).split())
    return RequestError("source", message if str(path) in message else f"{path}: {message}")


def read_source(path) -> tuple[np.ndarray, float]:
    """A source video's frames, uint8 [F, H, W, 3], and fps (any video t2v.video_io reads)."""
    try:
        frames, fps = read_video(path)
    except ValueError as e:
        raise _source_error(path, e) from None
    if len(frames) == 0:
        raise RequestError("source", f"{path} has no frames")
    return frames, fps


def read_pose_source(path) -> list[np.ndarray]:
    """OpenPose keypoints per frame ([P, 18, 3] each) in the JSON's own pixels: a .json file or a folder of them."""
    where = Path(path).expanduser()
    if where.is_file() and where.suffix.lower() != ".json":
        raise RequestError(
            "source",
            f"{path}: pose needs OpenPose JSON (a .json file or a folder of them; t2v does not find poses in a "
            "video), or a video of pose maps with --as-map",
        )
    try:
        return read_openpose_json(where, size=(1, 1), pose_size=(1, 1))  # scale 1: the JSON's pixels
    except ValueError as e:
        raise _source_error(path, e) from None


def take_frames(req, count: int) -> tuple[int, tuple[str, ...]]:
    """How many of the source's `count` frames to use: num_frames (at most count), else all up to a cap."""
    if req.num_frames is not None:
        if req.num_frames > count:
            raise RequestError("num_frames", f"num_frames is {req.num_frames} but {req.source} has {count} frames")
        return req.num_frames, ()
    if count > MAX_SOURCE_FRAMES:
        return MAX_SOURCE_FRAMES, (f"{req.source} has {count} frames; using the first {MAX_SOURCE_FRAMES}",)
    return count, ()


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 frames [F, h, w, 3] -> [F, height, width, 3] (area averaging when shrinking, cubic when growing)."""
    if frames.shape[1:3] == (height, width):
        return frames
    shrink = height * width < frames.shape[1] * frames.shape[2]
    how = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.stack([cv2.resize(frame, (width, height), interpolation=how) for frame in frames])


def pose_maps(keypoints: list, req, height: int, width: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Pose maps at height x width from keypoints in the JSON's pixels (pose_size, else the output's)."""
    pose_w, pose_h = req.pose_size or (width, height)
    scale = np.array([width / pose_w, height / pose_h, 1.0], dtype=np.float32)
    scaled = [points * scale for points in keypoints]
    seen = np.concatenate([p[p[:, :, 2] > 0] for p in scaled] + [np.zeros((1, 3), np.float32)])
    reach = seen.max(axis=0)
    notes = ()
    if req.pose_size is None and (reach[0] > 1.05 * width or reach[1] > 1.05 * height):
        notes = (
            f"the poses in {req.source} reach past the {width}x{height} frame (x {reach[0]:.0f}, y {reach[1]:.0f}): "
            "pass --pose-size W H, the size of the frames OpenPose read",
        )
    return draw_pose_maps(scaled, height, width), notes


# ---------------------------------------------------------------- models
_cache: dict[tuple, object] = {}


def _cached(key: tuple, load: Callable[[], object]):
    """One edit pipeline or ControlNet in memory at a time (the text-to-image model: t2v.zero_shot's cache)."""
    if key not in _cache:
        _cache.clear()
        _cache[key] = load()
    return _cache[key]


def get_edit_pipeline(model: str | None, device: str, dtype: str | None) -> VideoInstructPix2PixPipeline:
    """An Instruct-Pix2Pix model (None: the embedded t2v-shapes-edit), loaded once per (model, device, dtype)."""

    def load():
        with quiet():
            pipe = VideoInstructPix2PixPipeline.from_pretrained(
                model or DEFAULT_EDIT_MODEL_NAME, dtype=parse_dtype(dtype, device)
            )
        return pipe.to(device)

    return _cached(("edit", model, device, dtype), load)


def load_controlnet(path, dtype=None):
    """A diffusers ControlNetModel from a local folder, checked as t2v checks models: config.json naming a
    ControlNetModel, safetensors weights (never pickle), no Python code."""
    from diffusers import ControlNetModel

    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelError(f"ControlNet folder {path} does not exist")
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text()) if config_file.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{config_file} is not valid JSON: {e}") from e
    found = config.get("_class_name") if isinstance(config, dict) else None
    if found != "ControlNetModel":
        what = "no config.json" if config is None else f"found a {found}"
        raise ModelError(f"{path} is not a diffusers ControlNetModel folder ({what})")
    code = sorted(str(p.relative_to(path)) for p in path.rglob("*.py"))
    if code:
        raise ModelError(f"{path} contains Python code ({', '.join(code[:3])}); t2v never runs code from a model")
    files = [p.name for p in path.iterdir()]
    if not any(f.endswith(".safetensors") for f in files):
        pickled = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
        why = f"only pickle-based weights ({', '.join(pickled)})" if pickled else "no .safetensors weights"
        raise ModelError(f"{path} has {why}; t2v loads safetensors only and never unpickles")
    with quiet():
        try:
            return ControlNetModel.from_pretrained(path, use_safetensors=True, torch_dtype=dtype).eval()
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"could not load the ControlNet in {path}: {' '.join(str(e).split())}") from e


def get_control_pipeline(model: str | None, controlnet, device: str, dtype: str | None) -> ControlVideoPipeline:
    """The text-to-image model (None: the embedded t2v-shapes-image, cached as `t2v image` caches it) with the
    ControlNet in `controlnet` (a folder, cached), checked to fit the model."""
    key = ("controlnet", str(Path(controlnet).expanduser().resolve()), device, dtype)
    net = _cached(key, lambda: load_controlnet(controlnet, parse_dtype(dtype, device)).to(device))
    image = get_image_pipeline(model, device, dtype)
    for name in ("in_channels", "cross_attention_dim", "block_out_channels", "layers_per_block"):
        ours, theirs = net.config.get(name), image.unet.config.get(name)
        if ours is not None and list(np.atleast_1d(ours)) != list(np.atleast_1d(theirs)):
            raise ModelError(
                f"the ControlNet in {controlnet} is not for this model: its {name} is {ours}, the model's {theirs}"
            )
    return ControlVideoPipeline(**image.components, controlnet=net)


# ---------------------------------------------------------------- jobs
def _outputs(req, *extra: Path | None) -> list[Path | None]:
    """The output path (required) and any extra ones, checked before anything loads; all distinct."""
    if req.output is None:
        raise RequestError("output", "an output path is required")
    paths = [check_output_path(p, overwrite=req.overwrite) if p is not None else None for p in (req.output, *extra)]
    given = [p for p in paths if p is not None]
    if len(set(given)) < len(given):
        raise RequestError("save_control", "the control maps need a file of their own, not the output's")
    return paths


def _step_callback(on_step, steps: int, count: int, chunk_size: int | None):
    """diffusers' step-end hook counting every step of every chunk; raising from on_step stops the work."""
    if not on_step:
        return None
    total, done = steps * len(chunks(count, chunk_size)), [0]

    def callback(_pipeline, _i, _t, _tensors):
        done[0] += 1
        on_step(min(done[0], total), total)
        return {}

    return callback


def _run(pipe, req, call):
    """`call(pipe)` with the request's scheduler (the model's when none is given), put back after."""
    scheduler = pipe.scheduler
    if req.scheduler:
        pipe.scheduler = make_scheduler(req.scheduler, scheduler.config)
    pipe.set_progress_bar_config(disable=not req.progress)
    try:
        return call(pipe)
    finally:
        pipe.scheduler = scheduler


def run_edit(req: EditRequest, on_step: Callable[[int, int], None] | None = None) -> VideoResult:
    """Edit the source video by the instruction; write it; say what was made."""
    req = req.check()
    (path,) = _outputs(req)
    frames, source_fps = read_source(req.source)
    count, notes = take_frames(req, len(frames))
    device = pick_device(req.device)
    parse_dtype(req.dtype, device)
    pipe = get_edit_pipeline(req.model, device, req.dtype)
    req = req.resolve(pipe)
    frames = resize_frames(frames[:count], req.height, req.width)
    fps = source_fps if req.fps is None else float(req.fps)
    callback = _step_callback(on_step, req.num_inference_steps, count, req.chunk_size)
    out = _run(
        pipe,
        req,
        lambda p: p(
            req.prompt, frames, req.num_inference_steps, guidance_scale=req.guidance_scale,
            image_guidance_scale=req.image_guidance_scale, negative_prompt=req.negative_prompt,
            shared_noise=req.shared_noise, chunk_size=req.chunk_size, seed=req.seed, height=req.height,
            width=req.width, output_type="np", callback_on_step_end=callback,
        ),
    )  # fmt: skip
    write_video(path, out.frames, fps=fps, overwrite=req.overwrite)
    return VideoResult(path, req.seed, req.height, req.width, notes, count, fps)


def _read_control_source(req) -> tuple[np.ndarray | list, float]:
    """Frames (uint8 [F, H, W, 3]) or, for pose from OpenPose JSON, keypoints per frame; and the fps."""
    if req.kind == "pose" and not req.as_map:
        return read_pose_source(req.source), DEFAULT_FPS
    return read_source(req.source)


def control_maps(req, source, height: int, width: int, depth=None) -> tuple[np.ndarray, tuple[str, ...]]:
    """The maps the ControlNet is conditioned on, uint8 [F, height, width, 3], from the (cut) source."""
    if req.kind == "pose" and not req.as_map:
        return pose_maps(source, req, height, width)
    frames = resize_frames(source, height, width)
    if req.as_map:
        return frames, ()
    if req.kind == "edges":
        return canny_maps(frames), ()
    return depth_maps(frames, depth), ()


def run_control(req: ControlRequest, on_step: Callable[[int, int], None] | None = None) -> VideoResult:
    """Make a video that follows the control maps of the source; write it (and the maps when asked)."""
    req = req.check()
    path, control_path = _outputs(req, req.save_control)
    source, source_fps = _read_control_source(req)
    count, notes = take_frames(req, len(source))
    device = pick_device(req.device)
    parse_dtype(req.dtype, device)
    depth = load_depth_model(req.depth_model) if req.depth_model is not None else None
    pipe = get_control_pipeline(req.model, req.controlnet, device, req.dtype)
    req = req.resolve(pipe)
    if depth is not None:
        depth.model.to(device)
    maps, pose_notes = control_maps(req, source[:count], req.height, req.width, depth)
    fps = source_fps if req.fps is None else float(req.fps)
    callback = _step_callback(on_step, req.num_inference_steps, count, req.chunk_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PromptWarning)
        pipe.defaults.warn_about(req.prompt)
        out = _run(
            pipe,
            req,
            lambda p: p(
                req.prompt, maps, req.height, req.width, req.num_inference_steps, guidance_scale=req.guidance_scale,
                negative_prompt=req.negative_prompt, controlnet_conditioning_scale=req.conditioning_scale,
                chunk_size=req.chunk_size, seed=req.seed, output_type="np", callback_on_step_end=callback,
            ),
        )  # fmt: skip
    write_video(path, out.frames, fps=fps, overwrite=req.overwrite)
    if control_path is not None:
        write_video(control_path, maps, fps=fps, overwrite=req.overwrite)
    notes += pose_notes + tuple(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, PromptWarning)))
    return VideoResult(path, req.seed, req.height, req.width, notes, count, fps, maps, control_path)
