"""Writing pictures: the output checks of `t2v image`, atomic writes (nothing half-written on failure)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from t2v.video_io import VideoIOError, check_parent


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def check_image_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate a picture's output path before any generation; return it resolved."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise VideoIOError(
            f"unsupported image format {suffix or '(no extension)'!r} for {path}; "
            f"use one of {', '.join(IMAGE_FORMATS)}"
        )
    target = check_parent(path)
    if target.is_dir():
        raise VideoIOError(f"output {target} exists and is a directory, not an image file")
    if target.exists() and not overwrite:
        raise VideoIOError(f"output {target} already exists; pass --overwrite (overwrite=True) to replace it")
    return target


def write_image(path: str | os.PathLike, image, overwrite: bool = False) -> Path:
    """Write an [H, W, 3] picture (uint8, or floats in [0, 1]) to path, atomically."""
    target = check_image_path(path, overwrite)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise VideoIOError(f"an image must have shape [H, W, 3], got {tuple(image.shape)}")
    if image.dtype != np.uint8:
        image = (np.clip(image.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        Image.fromarray(image).save(tmp, format=IMAGE_FORMATS[target.suffix.lower()])
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
