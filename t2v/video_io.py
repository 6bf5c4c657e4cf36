"""Writing and reading videos.

Frames are numpy arrays of shape [F, H, W, 3]: uint8 in [0, 255], or float in
[0, 1] (converted with rounding and clipping). The format follows the path:

    .mp4   H.264 (libx264), yuv420p, BT.709, +faststart: plays in browsers
    .webm  VP9 (libvpx-vp9), yuv420p, BT.709
    .gif   one global 256-colour palette, loops forever; 10 ms timing resolution
    .npy   the exact uint8 array (fps is not stored: read back as DEFAULT_FPS)
    dir/   a folder of frame_00000.png, frame_00001.png, ... (a path with no
           extension or ending in "/"); fps is kept in a PNG text chunk

Writes are atomic: the video goes to a hidden temporary file (or folder) next to
the target and is renamed into place only once complete, so a failed or
interrupted write never leaves a partial output. All errors are `VideoIOError`
(a `ValueError`) with a one-line message, so a CLI can catch and print them.

Encoding uses the ffmpeg binary bundled with imageio-ffmpeg, called directly so
that its exit status is checked; GIF palettes come from ffmpeg's palettegen
(Pillow's GIF writer would merge identical consecutive frames).
"""

from __future__ import annotations

import math
import numbers
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo


__all__ = [
    "DEFAULT_FPS",
    "SUPPORTED_FORMATS",
    "VideoIOError",
    "VideoNotFoundError",
    "as_uint8_frames",
    "check_output_path",
    "format_for_path",
    "read_video",
    "write_video",
]

DEFAULT_FPS = 8.0  # as ModelScope text-to-video
MAX_FPS = 240

# format name -> how a path selects it
SUPPORTED_FORMATS: dict[str, str] = {
    "mp4": ".mp4 (H.264)",
    "webm": ".webm (VP9)",
    "gif": ".gif",
    "npy": ".npy (exact uint8 array)",
    "png": "a directory of PNG frames (no extension, or a trailing '/')",
}
_EXTENSIONS = {".mp4": "mp4", ".webm": "webm", ".gif": "gif", ".npy": "npy"}
_MAX_CRF = {"mp4": 51, "webm": 63}
_FPS_TEXT_KEY = "t2v:fps"  # PNG text chunk holding the frame rate

# rgb24 -> yuv420p with the BT.709 matrix, tagged as such, so players do not guess
_BT709 = [
    "-vf",
    "scale=out_color_matrix=bt709:out_range=tv,"
    "setparams=range=tv:colorspace=bt709:color_primaries=bt709:color_trc=bt709",
]


class VideoIOError(ValueError):
    """Bad video path, bad frames or arguments, or a failed encode/decode."""


class VideoNotFoundError(VideoIOError, FileNotFoundError):
    """The video to read does not exist."""


def format_for_path(path: str | os.PathLike) -> str:
    """Return the format name (a key of SUPPORTED_FORMATS) chosen by `path`'s extension."""
    s = os.fspath(path)
    if not s:
        raise VideoIOError("path must not be empty")
    if s.endswith(("/", os.sep)):
        return "png"
    suffix = Path(s).suffix.lower()
    if suffix == "":
        return "png"
    if suffix not in _EXTENSIONS:
        allowed = ", ".join(SUPPORTED_FORMATS.values())
        raise VideoIOError(f"path {s!r} has unsupported extension {suffix!r}; supported: {allowed}")
    return _EXTENSIONS[suffix]


def _is_frame_folder(path: Path) -> bool:
    """True if `path` holds only .png files (safe to replace with new frames)."""
    return all(p.is_file() and p.suffix.lower() == ".png" for p in path.iterdir())


def check_parent(path: str | os.PathLike) -> Path:
    """The resolved output path, once its directory is known to exist and be writable."""
    target = Path(path).expanduser().resolve()
    parent = target.parent
    if not parent.exists():
        raise VideoIOError(f"output directory {parent} does not exist")
    if not parent.is_dir():
        raise VideoIOError(f"output directory {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VideoIOError(f"output directory {parent} is not writable")
    return target


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate an output path before any expensive generation; return it resolved.

    Checks the format is supported, the parent directory exists and is writable, and
    that an existing target is only replaced when `overwrite` is True (an existing
    folder only if it holds nothing but PNG files).
    """
    fmt = format_for_path(path)
    target = check_parent(path)
    if target.exists():
        if not overwrite:
            raise VideoIOError(f"output {target} already exists; pass --overwrite (overwrite=True) to replace it")
        if fmt == "png" and not target.is_dir():
            raise VideoIOError(f"output {target} exists and is not a directory of PNG frames")
        if fmt == "png" and not _is_frame_folder(target):
            raise VideoIOError(f"refusing to replace directory {target}: it holds files other than PNG frames")
        if fmt != "png" and target.is_dir():
            raise VideoIOError(f"output {target} exists and is a directory, not a {fmt} file")
    return target


def as_uint8_frames(frames, what: str = "frames") -> np.ndarray:
    """Validate a video [F, H, W, 3] and return it as contiguous uint8.

    Floats are taken to be in [0, 1]: scaled by 255, rounded and clipped.
    """
    try:
        frames = np.asarray(frames)
    except ValueError as e:
        raise VideoIOError(f"{what} must be an array of shape [F, H, W, 3]: {e}") from e
    shape = tuple(frames.shape)
    if frames.ndim != 4:
        batch = frames.ndim == 5 and shape[0] == 1
        hint = "; for a batch of one video pass frames[0]" if batch else ""
        raise VideoIOError(f"{what} must have shape [F, H, W, 3], got shape {shape}{hint}")
    if shape[-1] != 3:
        hint = "; looks like [F, 3, H, W]: transpose to [F, H, W, 3]" if shape[1] == 3 else ""
        raise VideoIOError(
            f"{what} must have 3 (RGB) channels in the last axis, got {shape[-1]} (shape {shape}){hint}"
        )
    if 0 in shape:
        raise VideoIOError(f"{what} must not be empty, got shape {shape}")
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames)
    if np.issubdtype(frames.dtype, np.floating):
        if not np.isfinite(frames).all():
            raise VideoIOError(f"{what} contain NaN or infinite values")
        return np.rint(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise VideoIOError(f"{what} must be uint8 in [0, 255] or float in [0, 1], got dtype {frames.dtype}")


def check_fps(fps, name: str = "fps") -> float:
    """Frames per second: a number in (0, MAX_FPS]; the one rule for every door (files, requests, storyboards)."""
    is_real = isinstance(fps, numbers.Real) and not isinstance(fps, bool)
    if not is_real or not math.isfinite(fps) or not 0 < fps <= MAX_FPS:
        raise VideoIOError(f"{name} must be a number in (0, {MAX_FPS}], got {fps!r}")
    return float(fps)


def _check_crf(crf, fmt: str) -> int:
    hi = _MAX_CRF[fmt]
    if isinstance(crf, bool) or not isinstance(crf, numbers.Integral) or not 0 <= crf <= hi:
        raise VideoIOError(f"crf must be an integer in [0, {hi}] for {fmt}, got {crf!r}")
    return int(crf)


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    """Pad odd height/width by one pixel (edge replicated, bottom/right), with a warning."""
    _, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2
    if not (ph or pw):
        return frames
    warnings.warn(
        f"padded frames from {w}x{h} to {w + pw}x{h + ph} (width x height) by repeating "
        f"the right/bottom edge: yuv420p needs even width and height",
        stacklevel=3,
    )
    return np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")


def _ffmpeg_output_args(fmt: str, crf: int) -> list[str]:
    """ffmpeg output options for each encoded format."""
    if fmt == "mp4":
        return [
            "-c:v",
            "libx264",
            "-crf",
            str(crf),
            "-pix_fmt",
            "yuv420p",
            *_BT709,
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ]
    if fmt == "webm":  # -b:v 0 makes -crf constant quality
        return [
            "-c:v",
            "libvpx-vp9",
            "-crf",
            str(crf),
            "-b:v",
            "0",
            "-deadline",
            "good",
            "-cpu-used",
            "4",
            "-row-mt",
            "1",
            "-pix_fmt",
            "yuv420p",
            *_BT709,
            "-f",
            "webm",
        ]
    if fmt == "gif":  # one palette for the whole clip (no flicker); ffmpeg buffers the clip
        return ["-vf", "split[a][b];[a]palettegen[p];[b][p]paletteuse", "-loop", "0", "-f", "gif"]
    raise AssertionError(fmt)


def _encode_ffmpeg(out: Path, frames: np.ndarray, fps: float, out_args: list[str]) -> None:
    """Pipe raw RGB frames into the bundled ffmpeg; raise VideoIOError if it fails."""
    _, h, w, _ = frames.shape
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-framerate",
        repr(fps),
        "-i",
        "-",
        "-an",
        *out_args,
        "-y",
        str(out),
    ]
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: ffmpeg can never block on it
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        broken_pipe = False
        try:
            try:
                for frame in frames:
                    proc.stdin.write(frame.tobytes())
                proc.stdin.close()
            except BrokenPipeError:  # ffmpeg quit early; its exit code and log say why
                broken_pipe = True
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
        if rc != 0 or broken_pipe:
            log.seek(0)
            lines = log.read().decode(errors="replace").strip().splitlines()
            raise VideoIOError(
                f"ffmpeg failed to write {out.name} (exit code {rc}): {lines[-1] if lines else 'no error message'}"
            )


def _write_png_folder(target: Path, frames: np.ndarray, fps: float) -> None:
    """Write frame_00000.png... into a temporary folder, then swap it into place."""
    tmp = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
    os.mkdir(tmp)
    try:
        info = PngInfo()
        info.add_text(_FPS_TEXT_KEY, repr(fps))
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / f"frame_{i:05d}.png", pnginfo=info)
        if target.exists():  # replace the old folder only now that the new one is complete
            old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_video(
    path: str | os.PathLike,
    frames,
    fps: float = DEFAULT_FPS,
    overwrite: bool = False,
    crf: int = 18,
) -> Path:
    """Write `frames` ([F, H, W, 3] uint8, or float in [0, 1]) to `path` atomically.

    The format follows the extension (see the module docstring). `crf` is the
    constant-quality level for mp4 (0-51) and webm (0-63), lower is better; other
    formats ignore it. Odd sizes are padded (not resized) to even for mp4/webm, with
    a warning. Returns the resolved output path.
    """
    target = check_output_path(path, overwrite=overwrite)
    fmt = format_for_path(path)
    frames = as_uint8_frames(frames)
    fps = check_fps(fps)
    if fmt in _MAX_CRF:
        crf = _check_crf(crf, fmt)
        frames = _pad_to_even(frames)
    if fmt == "gif" and fps > 50:
        warnings.warn(
            f"fps={fps} is above 50: GIF frame delays are in 10 ms steps and many "
            "viewers slow down delays under 20 ms",
            stacklevel=2,
        )
    try:
        if fmt == "png":
            _write_png_folder(target, frames, fps)
            return target
        tmp = target.parent / f".{target.stem}.tmp-{secrets.token_hex(4)}{target.suffix}"
        try:
            if fmt == "npy":
                with open(tmp, "xb") as f:
                    np.save(f, frames, allow_pickle=False)
            else:
                _encode_ffmpeg(tmp, frames, fps, _ffmpeg_output_args(fmt, crf))
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except VideoIOError:
        raise
    except (OSError, RuntimeError) as e:
        raise VideoIOError(f"could not write {target}: {e}") from e
    return target


def _frame_sort_key(p: Path) -> tuple:
    m = re.fullmatch(r"frame_(\d+)\.png", p.name, flags=re.IGNORECASE)
    return (int(m.group(1)), p.name) if m else (math.inf, p.name)


def _read_png_folder(path: Path) -> tuple[np.ndarray, float]:
    pngs = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".png"]
    numbered = [p for p in pngs if p.name.lower().startswith("frame_")]
    files = sorted(numbered, key=_frame_sort_key) if numbered else sorted(pngs)
    if not files:
        raise VideoIOError(f"no PNG frames in directory {path}")
    frames, fps = [], DEFAULT_FPS
    for i, f in enumerate(files):
        with Image.open(f) as im:
            if i == 0 and _FPS_TEXT_KEY in getattr(im, "text", {}):
                fps = check_fps(float(im.text[_FPS_TEXT_KEY]))
            frames.append(np.asarray(im.convert("RGB")))
    if len({fr.shape for fr in frames}) > 1:
        raise VideoIOError(f"PNG frames in {path} have different sizes")
    return np.stack(frames), fps


def _read_gif(path: Path) -> tuple[np.ndarray, float]:
    frames, total_ms = [], 0
    with Image.open(path) as im:
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
            total_ms += im.info.get("duration", 0) or 0
    fps = 1000.0 * len(frames) / total_ms if total_ms > 0 else DEFAULT_FPS
    return np.stack(frames), fps


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, float]:
    """Decode the first video stream to rgb24 with the bundled ffmpeg."""
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        lines = log.strip().splitlines()
        raise VideoIOError(f"could not read {path}: ffmpeg: {lines[-1] if lines else 'failed'}")
    out = log[log.find("Output #0") :]  # the rawvideo stream ffmpeg wrote to stdout
    size = re.search(r", (\d+)x(\d+)[,\s]", out)
    if size is None:
        raise VideoIOError(f"could not read {path}: ffmpeg did not report the frame size")
    w, h = int(size.group(1)), int(size.group(2))
    n, rest = divmod(len(proc.stdout), w * h * 3)
    if n == 0 or rest:
        raise VideoIOError(f"could not read {path}: got {len(proc.stdout)} bytes for {w}x{h} frames")
    rate = re.search(r"(\d+(?:\.\d+)?) fps", out)
    fps = float(rate.group(1)) if rate and float(rate.group(1)) > 0 else DEFAULT_FPS
    return np.frombuffer(proc.stdout, np.uint8).reshape(n, h, w, 3).copy(), fps


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read a video written by `write_video` (or any mp4/webm/gif/PNG folder/npy).

    Returns (frames uint8 [F, H, W, 3], fps). fps is DEFAULT_FPS when the file does
    not store it (npy, PNG folders from elsewhere, ffmpeg could not tell). mp4/webm
    fps is as ffmpeg reports it (2 decimals, e.g. 29.97). GIF fps is approximate:
    frame delays are stored in 10 ms steps. mp4/webm written from odd
    sizes come back with their padding. npy is loaded with allow_pickle=False.
    """
    fmt = format_for_path(path)
    p = Path(path).expanduser()
    if not p.exists():
        raise VideoNotFoundError(f"video not found: {p}")
    if fmt == "png" and not p.is_dir():
        raise VideoIOError(f"{p} is not a directory of PNG frames")
    if fmt != "png" and not p.is_file():
        raise VideoIOError(f"{p} is not a {fmt} file")
    try:
        if fmt == "png":
            return _read_png_folder(p)
        if fmt == "gif":
            return _read_gif(p)
        if fmt == "npy":
            frames = as_uint8_frames(np.load(p, allow_pickle=False), what=f"array in {p}")
            return frames, DEFAULT_FPS
        return _read_ffmpeg(p)
    except VideoIOError:
        raise
    except (OSError, RuntimeError, ValueError) as e:  # corrupt file, pickled npy, ...
        lines = str(e).strip().splitlines()
        raise VideoIOError(f"could not read {p}: {lines[-1] if lines else type(e).__name__}") from e


def frame_changes(frames):
    """Mean absolute change between consecutive frames [F - 1] of frames [F, ...] (a numpy array or a
    torch tensor; uint8 frames give changes on the 0..255 scale)."""
    x = frames.astype(np.float32) if isinstance(frames, np.ndarray) else frames.float()
    return abs(x[1:] - x[:-1]).mean(tuple(range(1, x.ndim)))
