"""Control maps of any video, for ControlNet video (`t2v.pipelines.control_video`).

A control map is a picture per frame in the form a ControlNet was trained on, uint8 [F, H, W, 3]:

- `canny_maps`: OpenCV's Canny edges, white on black (ControlNet's "canny" annotator).
- `draw_pose_maps`: OpenPose skeletons (COCO-18 keypoints) in OpenPose's limb colours on black, from
  keypoints read by `read_openpose_json` (OpenPose's `--write_json` output, or the same as a list).
- `depth_maps`: relative depth from a transformers depth-estimation model in a local folder (DPT,
  Depth Anything, ...), near = bright, normalised over the whole video so that brightness means the
  same depth in every frame.

Frames are numpy arrays [F, H, W, 3], uint8 or floats in [0, 1] (`read_control_video` reads any video
`t2v.video_io` reads). Every error is a `ValueError` with a one-line message.

Example:
    >>> frames = read_control_video("dance.mp4")
    >>> edges = canny_maps(frames)                                        # uint8 [F, H, W, 3]
    >>> poses = draw_pose_maps(read_openpose_json("dance.json", size=(512, 512)), 512, 512)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from t2v.video_io import as_uint8_frames, read_video


# ---------------------------------------------------------------- videos and edges
def read_control_video(path: str | os.PathLike) -> np.ndarray:
    """The frames of the video at `path` (mp4, webm, gif, npy or a folder of PNGs): uint8 [F, H, W, 3]."""
    frames, _ = read_video(path)  # a VideoIOError (a ValueError) for a missing file or not a video
    if len(frames) == 0:
        raise ValueError(f"control video {path} has no frames")
    return frames


def canny_maps(frames, low: int = 100, high: int = 200) -> np.ndarray:
    """Canny edges of each frame (OpenCV, on the RGB frame as ControlNet's annotator), white on black:
    uint8 [F, H, W, 3]. `low`, `high`: the hysteresis thresholds, 0 <= low <= high."""
    for name, value in (("low", low), ("high", high)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a number >= 0 (a Canny threshold), got {value!r}")
    if low > high:
        raise ValueError(f"low must be <= high (Canny thresholds), got low={low!r}, high={high!r}")
    frames = as_uint8_frames(frames)
    edges = np.stack([cv2.Canny(frame, float(low), float(high)) for frame in frames])
    return np.repeat(edges[..., None], 3, axis=-1)


# ---------------------------------------------------------------- OpenPose
# COCO-18: 0 nose, 1 neck, 2-4 right shoulder/elbow/wrist, 5-7 left shoulder/elbow/wrist, 8-10 right
# hip/knee/ankle, 11-13 left hip/knee/ankle, 14 right eye, 15 left eye, 16 right ear, 17 left ear.
NUM_KEYPOINTS = 18
# The 17 limbs OpenPose draws (joint pairs) and the 18 colours (RGB): limb i and joint i take colour i.
POSE_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
POSE_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
LIMB_SHADE = 0.6  # limbs are drawn at 60% of their colour, joints at full colour on top


def _size(name: str, value) -> tuple[int, int]:
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"{name} must be (width, height), two integers > 0, got {value!r}")
    return int(value[0]), int(value[1])


def _load_pose_json(source):
    """A list of frames from a list, a JSON file holding one, or a folder of OpenPose's per-frame files."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise ValueError(f"no .json files in the pose folder {path}")
        return [_load_pose_json(f) for f in files]
    if not path.is_file():
        raise ValueError(f"pose file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def _person(person, where: str) -> np.ndarray:
    if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
        raise ValueError(f"{where} must be an object with 'pose_keypoints_2d', got {type(person).__name__}")
    values = person["pose_keypoints_2d"]
    expected = NUM_KEYPOINTS * 3
    if not isinstance(values, list) or len(values) != expected:
        n = len(values) if isinstance(values, list) else type(values).__name__
        hint = " (BODY_25? run OpenPose with --model_pose COCO)" if n == 75 else ""
        raise ValueError(f"{where}: pose_keypoints_2d must be {expected} numbers (18 COCO x, y, c), got {n}{hint}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{where}: pose_keypoints_2d must hold only numbers")
    points = np.asarray(values, dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
    if not np.isfinite(points).all():
        raise ValueError(f"{where}: pose_keypoints_2d has NaN or infinite values")
    if (points[:, 2] < 0).any():
        raise ValueError(f"{where}: pose_keypoints_2d has a negative confidence")
    return points


def read_openpose_json(path_or_obj, size: tuple[int, int], pose_size: tuple[int, int] | None = None) -> list:
    """OpenPose keypoints per frame, in pixels of an output of `size` (width, height).

    `path_or_obj`: a list of frames `{"people": [{"pose_keypoints_2d": [x, y, c, ...]}]}` (COCO-18 order,
    18 * 3 numbers, confidence 0 = not seen), a JSON file holding that list, or a folder of OpenPose's
    per-frame `--write_json` files (sorted by name). Coordinates are pixels of `pose_size` (width, height),
    the frames the poses were found in, if given, else of `size`. Returns a float32 array [P, 18, 3] per
    frame (P people, maybe 0).
    """
    width, height = _size("size", size)
    pose_w, pose_h = _size("pose_size", pose_size) if pose_size is not None else (width, height)
    frames = _load_pose_json(path_or_obj)
    if not isinstance(frames, list):
        raise ValueError(f"poses must be a list of frames ({{'people': [...]}} each), got {type(frames).__name__}")
    if not frames:
        raise ValueError("poses must hold at least one frame, got an empty list")
    scale = np.array([width / pose_w, height / pose_h, 1.0])
    out = []
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or not isinstance(frame.get("people"), list):
            raise ValueError(f"pose frame {i} must be an object with a 'people' list, got {str(frame)[:60]}")
        people = [_person(p, f"pose frame {i}, person {j}") * scale for j, p in enumerate(frame["people"])]
        out.append(np.asarray(people, dtype=np.float32).reshape(len(people), NUM_KEYPOINTS, 3))
    return out


def _draw_limb(canvas: np.ndarray, a, b, color, width: int) -> None:
    """A filled ellipse from point a to point b (x, y), `width` pixels either side of its axis."""
    (xa, ya), (xb, yb) = a, b
    length = math.hypot(xa - xb, ya - yb)
    angle = math.degrees(math.atan2(yb - ya, xb - xa))
    center = (int(round((xa + xb) / 2)), int(round((ya + yb) / 2)))
    polygon = cv2.ellipse2Poly(center, (int(round(length / 2)), width), int(round(angle)), 0, 360, 1)
    cv2.fillConvexPoly(canvas, polygon, color)


def draw_pose_maps(keypoints_per_frame, height: int, width: int, *, stick_width: int = 4) -> np.ndarray:
    """OpenPose skeletons on black, uint8 [F, H, W, 3]: per frame, arrays [P, 18, 3] (or [18, 3] for one
    person) of x, y (pixels) and confidence. Limbs are ellipses `stick_width` pixels either side at 60%
    of OpenPose's colour, joints dots of radius `stick_width` at full colour; confidence 0 is not drawn."""
    _size("(width, height)", (width, height))
    if not isinstance(stick_width, int) or isinstance(stick_width, bool) or stick_width < 1:
        raise ValueError(f"stick_width must be an integer >= 1, got {stick_width!r}")
    if len(keypoints_per_frame) == 0:
        raise ValueError("keypoints_per_frame must hold at least one frame")
    maps = np.zeros((len(keypoints_per_frame), height, width, 3), dtype=np.uint8)
    for i, points in enumerate(keypoints_per_frame):
        points = np.asarray(points, dtype=np.float64)
        points = points[None] if points.ndim == 2 else points
        if points.ndim != 3 or points.shape[1:] != (NUM_KEYPOINTS, 3) or not np.isfinite(points).all():
            raise ValueError(f"keypoints of frame {i} must be finite numbers [P, 18, 3], got shape {points.shape}")
        canvas = maps[i]  # a contiguous view: OpenCV draws into the maps
        for person in points:
            seen = person[:, 2] > 0
            for (j, k), color in zip(POSE_LIMBS, POSE_COLORS):
                if seen[j] and seen[k]:
                    shade = tuple(int(c * LIMB_SHADE) for c in color)
                    _draw_limb(canvas, person[j, :2], person[k, :2], shade, stick_width)
            for j in np.flatnonzero(seen):
                x, y = (int(round(v)) for v in person[j, :2])
                cv2.circle(canvas, (x, y), stick_width, POSE_COLORS[j], thickness=-1)
    return maps


# ---------------------------------------------------------------- depth
# models whose raw predicted_depth is depth (far = large), not inverse depth (near = large) as DPT's, Depth
# Anything's (relative) and Depth Pro's; Depth Anything's metric variants say so in their config
METRIC_DEPTH_MODELS = ("glpn", "zoedepth", "prompt_depth_anything")


class DepthModel(NamedTuple):
    """A transformers depth-estimation model and its image processor (`load_depth_model`)."""

    model: torch.nn.Module
    processor: object
    metric: bool  # True: the model predicts depth (far = large); False: inverse depth (near = large)


def load_depth_model(model_dir: str | os.PathLike) -> DepthModel:
    """A depth-estimation model (DPT, Depth Anything, ...) from a local folder in transformers' layout:
    safetensors weights only, no code run (never trust_remote_code)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForDepthEstimation
    from transformers.models.auto.modeling_auto import MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES as DEPTH_MODELS

    from t2v.models.loading import quiet

    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        missing = "does not exist" if not path.exists() else "has no config.json"
        raise ValueError(f"depth model folder {path} {missing}; pass a transformers depth-estimation model folder")
    with quiet():
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"could not read the model config in {path}: {e}") from e
        if config.model_type not in DEPTH_MODELS:
            raise ValueError(
                f"{path} holds a {config.model_type!r} model, not a depth-estimation model "
                f"(one of: {', '.join(sorted(DEPTH_MODELS))})"
            )
        try:
            model = AutoModelForDepthEstimation.from_pretrained(path, use_safetensors=True, local_files_only=True)
            processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"could not load the depth model in {path}: {e}") from e
    metric = config.model_type in METRIC_DEPTH_MODELS or getattr(config, "depth_estimation_type", "") == "metric"
    return DepthModel(model.eval(), processor, metric)


def depth_to_uint8(depth: torch.Tensor, metric: bool = False) -> np.ndarray:
    """Depth maps [F, H, W] -> uint8 [F, H, W, 3], near = bright, min-max over the whole video (metric
    depth is inverted first, 1 / depth, as the relative inverse depth ControlNet's depth maps show)."""
    depth = depth.double()
    if metric:
        depth = 1.0 / depth.clamp(min=1e-6)
    low, high = depth.min(), depth.max()
    scaled = (depth - low) / (high - low) if high > low else torch.zeros_like(depth)
    gray = (scaled * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return np.repeat(gray[..., None], 3, axis=-1)


@torch.no_grad()
def depth_maps(frames, model: str | os.PathLike | DepthModel, *, batch_size: int = 8) -> np.ndarray:
    """Depth of each frame, uint8 [F, H, W, 3] (near = bright, one scale for the whole video), from a
    depth-estimation model: a local folder (`load_depth_model`) or a loaded `DepthModel` (on any device)."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    frames = as_uint8_frames(frames)
    estimator = model if isinstance(model, DepthModel) else load_depth_model(model)
    device = next(estimator.model.parameters()).device
    depths = []
    for start in range(0, len(frames), batch_size):
        inputs = estimator.processor(images=list(frames[start : start + batch_size]), return_tensors="pt")
        pixels = inputs["pixel_values"].to(device=device, dtype=estimator.model.dtype)
        predicted = estimator.model(pixel_values=pixels).predicted_depth.float()
        resized = F.interpolate(predicted[:, None], size=frames.shape[1:3], mode="bicubic", align_corners=False)
        depths.append(resized[:, 0].cpu())
    return depth_to_uint8(torch.cat(depths), estimator.metric)
