"""Tests for t2v.video_io: round trips, padding, validation and atomic writes."""

import os
import subprocess
import time
import warnings

import av
import numpy as np
import pytest
from PIL import Image

from t2v import video_io
from t2v.video_io import (
    DEFAULT_FPS,
    SUPPORTED_FORMATS,
    VideoIOError,
    VideoNotFoundError,
    as_uint8_frames,
    check_output_path,
    format_for_path,
    read_video,
    write_video,
)


def pattern(f: int = 6, h: int = 64, w: int = 64) -> np.ndarray:
    """Smooth synthetic video: moving horizontal gradient, vertical gradient, a flat block."""
    y, x = np.mgrid[0:h, 0:w]
    out = np.zeros((f, h, w, 3), np.uint8)
    for i in range(f):
        out[i, ..., 0] = x * 200 // max(w - 1, 1) + 5 * i
        out[i, ..., 1] = y * 255 // max(h - 1, 1)
        out[i, ..., 2] = 128
        out[i, : h // 2, : w // 2] = (200, 30, 60)
    return out


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def listing(d) -> list[str]:
    return sorted(os.listdir(d))


# --- formats and paths ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path, fmt",
    [
        ("a.mp4", "mp4"),
        ("dir/A.MP4", "mp4"),
        ("a.webm", "webm"),
        ("a.gif", "gif"),
        ("a.npy", "npy"),
        ("frames", "png"),
        ("frames/", "png"),
        ("out.mp4/", "png"),
    ],
)
def test_format_for_path(path, fmt):
    assert format_for_path(path) == fmt
    assert fmt in SUPPORTED_FORMATS


def test_unknown_extension_lists_supported():
    with pytest.raises(VideoIOError, match=r"'clip\.avi'.*'\.avi'.*\.mp4.*\.webm.*\.gif.*\.npy"):
        format_for_path("clip.avi")


def test_check_output_path(tmp_path):
    assert check_output_path(tmp_path / "sub" / ".." / "a.mp4") == (tmp_path / "a.mp4").resolve()
    with pytest.raises(VideoIOError, match=r"output directory .*missing does not exist"):
        check_output_path(tmp_path / "missing" / "a.mp4")
    (tmp_path / "file").write_text("x")
    with pytest.raises(VideoIOError, match="is not a directory"):
        check_output_path(tmp_path / "file" / "a.mp4")
    with pytest.raises(VideoIOError, match="unsupported extension"):
        check_output_path(tmp_path / "a.mov")
    (tmp_path / "a.mp4").write_bytes(b"old")
    with pytest.raises(VideoIOError, match="already exists; pass --overwrite"):
        check_output_path(tmp_path / "a.mp4")
    assert check_output_path(tmp_path / "a.mp4", overwrite=True) == (tmp_path / "a.mp4").resolve()


def test_check_output_path_read_only_dir(tmp_path, monkeypatch):
    # os.access answers as a non-root user would for a read-only folder (root, as in CI, may write anywhere)
    ro, real_access = tmp_path / "ro", os.access
    ro.mkdir()

    def access(path, mode, *args, **kwargs):
        if os.path.realpath(path) == str(ro.resolve()) and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(video_io.os, "access", access)
    with pytest.raises(VideoIOError, match=r"output directory .*ro is not writable"):
        check_output_path(ro / "a.mp4")
    assert check_output_path(tmp_path / "a.mp4") == (tmp_path / "a.mp4").resolve()  # a writable one still passes


# --- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("ext, fps", [("mp4", 8), ("mp4", 12.5), ("webm", 8)])
def test_roundtrip_lossy(tmp_path, ext, fps):
    frames = pattern()
    out = write_video(tmp_path / f"v.{ext}", frames, fps=fps)
    assert out == tmp_path / f"v.{ext}" and out.stat().st_size > 0
    got, got_fps = read_video(out)
    assert got.dtype == np.uint8 and got.shape == frames.shape
    assert got_fps == pytest.approx(fps)
    assert mae(got, frames) < 3
    assert listing(tmp_path) == [f"v.{ext}"]  # no temp files left


def test_mp4_is_browser_playable_h264(tmp_path):
    out = write_video(tmp_path / "v.mp4", pattern(f=3))
    with av.open(str(out)) as container:
        ctx = container.streams.video[0].codec_context
        assert (ctx.name, ctx.pix_fmt) == ("h264", "yuv420p")
        assert (ctx.width, ctx.height) == (64, 64)
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: index before the media


def test_webm_is_vp9(tmp_path):
    out = write_video(tmp_path / "v.webm", pattern(f=2))
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "vp9"


@pytest.mark.parametrize("ext", ["mp4", "webm"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (2, 16, 16), (1, 64, 64)])
def test_tiny_sizes(tmp_path, ext, shape):
    frames = pattern(*shape)
    got, fps = read_video(write_video(tmp_path / f"v.{ext}", frames))
    assert got.shape == frames.shape and fps == DEFAULT_FPS


def test_roundtrip_png_folder_exact(tmp_path):
    frames = pattern(f=3, h=17, w=9)  # odd sizes are fine for PNG
    out = write_video(tmp_path / "frames", frames, fps=12)
    assert listing(out) == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    got, fps = read_video(tmp_path / "frames/")
    np.testing.assert_array_equal(got, frames)
    assert fps == 12.0
    assert listing(tmp_path) == ["frames"]


def test_read_png_folder_any_names(tmp_path):
    frames = pattern(f=2, h=8, w=8)
    (tmp_path / "d").mkdir()
    Image.fromarray(frames[1]).save(tmp_path / "d" / "b.png")
    Image.fromarray(frames[0]).save(tmp_path / "d" / "a.png")
    got, fps = read_video(tmp_path / "d")
    np.testing.assert_array_equal(got, frames)
    assert fps == DEFAULT_FPS


def test_roundtrip_npy_exact(tmp_path):
    frames = pattern(h=15, w=7)
    got, fps = read_video(write_video(tmp_path / "v.npy", frames, fps=24))
    np.testing.assert_array_equal(got, frames)
    assert fps == DEFAULT_FPS  # npy stores no fps


@pytest.mark.parametrize("fps, tol", [(10, 1e-6), (8, 0.25)])  # GIF delays are 10 ms steps
def test_roundtrip_gif(tmp_path, fps, tol):
    frames = pattern(h=33, w=31)
    frames[3] = frames[2]  # identical consecutive frames must not be merged
    got, got_fps = read_video(write_video(tmp_path / "v.gif", frames, fps=fps))
    assert got.shape == frames.shape
    assert got_fps == pytest.approx(fps, abs=tol)
    assert mae(got, frames) < 4  # 256-colour palette
    with Image.open(tmp_path / "v.gif") as im:
        assert im.info.get("loop") == 0  # loops forever


def test_float_input_converted(tmp_path):
    frames = pattern(f=2, h=8, w=8)
    floats = frames.astype(np.float32) / 255
    got, _ = read_video(write_video(tmp_path / "v.npy", floats))
    np.testing.assert_array_equal(got, frames)
    clipped = as_uint8_frames(np.array([-0.5, 0.5, 1.5], np.float64).reshape(1, 1, 1, 3))
    assert clipped.dtype == np.uint8 and clipped.ravel().tolist() == [0, 128, 255]


# --- odd sizes -----------------------------------------------------------------------


def test_odd_size_padded_not_resized(tmp_path):
    frames = pattern(f=3, h=65, w=63)
    with pytest.warns(UserWarning, match=r"padded frames from 63x65 to 64x66"):
        out = write_video(tmp_path / "v.mp4", frames)
    got, _ = read_video(out)
    assert got.shape == (3, 66, 64, 3)
    assert mae(got[:, :65, :63], frames) < 3  # original region kept in place
    assert mae(got[:, :65, 63], frames[:, :, 62]) < 4  # padding repeats the edge


def test_pad_to_even_is_exact():
    frames = pattern(f=2, h=5, w=7)
    with pytest.warns(UserWarning, match="7x5 to 8x6"):
        padded = video_io._pad_to_even(frames)
    np.testing.assert_array_equal(padded[:, :5, :7], frames)
    np.testing.assert_array_equal(padded[:, 5, :7], frames[:, 4])
    np.testing.assert_array_equal(padded[:, :5, 7], frames[:, :, 6])
    even = frames[:, :4, :6]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # even sizes: no warning
        same = video_io._pad_to_even(even)
    assert same.shape == even.shape
    np.testing.assert_array_equal(same, even)


# --- bad input -----------------------------------------------------------------------

GOOD = pattern(f=2, h=8, w=8)


@pytest.mark.parametrize(
    "frames, match",
    [
        (GOOD[0], r"frames must have shape \[F, H, W, 3\], got shape \(8, 8, 3\)"),
        (GOOD[None], r"got shape \(1, 2, 8, 8, 3\); for a batch of one video pass frames\[0\]"),
        (np.zeros((2, 8, 8, 4), np.uint8), r"frames must have 3 \(RGB\) channels.*got 4"),
        (np.zeros((2, 3, 8, 8), np.uint8), r"looks like \[F, 3, H, W\]"),
        (np.zeros((0, 8, 8, 3), np.uint8), r"frames must not be empty, got shape \(0, 8, 8, 3\)"),
        (GOOD.astype(np.int64), r"frames must be uint8 .* or float .*, got dtype int64"),
        (np.full((1, 2, 2, 3), np.nan), r"frames contain NaN"),
    ],
)
def test_bad_frames(tmp_path, frames, match):
    with pytest.raises(VideoIOError, match=match):
        write_video(tmp_path / "v.mp4", frames)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("fps", [-1, 0, float("nan"), float("inf"), True, "8", 241])
def test_bad_fps(tmp_path, fps):
    with pytest.raises(VideoIOError, match=r"fps must be a number in \(0, 240\], got"):
        write_video(tmp_path / "v.npy", GOOD, fps=fps)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("ext, crf", [("mp4", 52), ("webm", -1), ("mp4", 18.5)])
def test_bad_crf(tmp_path, ext, crf):
    with pytest.raises(VideoIOError, match=rf"crf must be an integer in \[0, \d+\] for {ext}"):
        write_video(tmp_path / f"v.{ext}", GOOD, crf=crf)


def test_bad_extension_write(tmp_path):
    with pytest.raises(VideoIOError, match=r"unsupported extension '\.mkv'"):
        write_video(tmp_path / "v.mkv", GOOD)
    assert isinstance(VideoIOError("x"), ValueError)


# --- overwrite and atomic writes -----------------------------------------------------


def test_no_overwrite_without_flag(tmp_path):
    target = tmp_path / "v.npy"
    write_video(target, GOOD)
    before = target.read_bytes()
    with pytest.raises(VideoIOError, match="already exists; pass --overwrite"):
        write_video(target, GOOD[::-1].copy())
    assert target.read_bytes() == before
    write_video(target, GOOD[::-1].copy(), overwrite=True)
    np.testing.assert_array_equal(read_video(target)[0], GOOD[::-1])
    assert listing(tmp_path) == ["v.npy"]


def test_png_folder_overwrite(tmp_path):
    target = tmp_path / "frames"
    write_video(target, pattern(f=4, h=8, w=8))
    with pytest.raises(VideoIOError, match="pass --overwrite"):
        write_video(target, GOOD)
    write_video(target, GOOD, overwrite=True)
    assert len(listing(target)) == 2  # old frames gone
    np.testing.assert_array_equal(read_video(target)[0], GOOD)
    assert listing(tmp_path) == ["frames"]
    (target / "notes.txt").write_text("mine")  # never delete a folder that is not ours
    with pytest.raises(VideoIOError, match="refusing to replace directory"):
        write_video(target, GOOD, overwrite=True)


def _failing_popen(monkeypatch, tmp_path):
    """Make the encoder's stdin fail on the 2nd frame, once ffmpeg created its temp file."""
    real_popen = subprocess.Popen

    class FailingStdin:
        def __init__(self, pipe):
            self.pipe, self.calls, self.closed = pipe, 0, False

        def write(self, data):
            self.calls += 1
            if self.calls == 2:
                deadline = time.monotonic() + 5
                while not any(".tmp-" in n for n in os.listdir(tmp_path)):
                    assert time.monotonic() < deadline, "ffmpeg never created its temp file"
                    time.sleep(0.01)
                raise OSError(28, "No space left on device")
            return self.pipe.write(data)

        def close(self):
            self.closed = True
            self.pipe.close()

    def popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        proc.stdin = FailingStdin(proc.stdin)
        return proc

    monkeypatch.setattr(video_io.subprocess, "Popen", popen)


@pytest.mark.parametrize("existing", [False, True])
def test_failed_encode_leaves_nothing(tmp_path, monkeypatch, existing):
    target = tmp_path / "v.mp4"
    if existing:
        target.write_bytes(b"previous video")
    _failing_popen(monkeypatch, tmp_path)
    with pytest.raises(VideoIOError, match="could not write .*No space left on device"):
        write_video(target, pattern(f=4), overwrite=True)
    assert listing(tmp_path) == (["v.mp4"] if existing else [])
    if existing:
        assert target.read_bytes() == b"previous video"


def test_ffmpeg_error_reported_and_cleaned(tmp_path, monkeypatch):
    bad_args = ["-c:v", "no_such_codec", "-f", "mp4"]
    monkeypatch.setattr(video_io, "_ffmpeg_output_args", lambda fmt, crf: bad_args)
    with pytest.raises(VideoIOError, match=r"ffmpeg failed to write .*exit code"):
        write_video(tmp_path / "v.mp4", GOOD)
    assert listing(tmp_path) == []


def test_failed_png_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "frames"
    write_video(target, GOOD)
    real_save, calls = Image.Image.save, []

    def save(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    with pytest.raises(VideoIOError, match="disk full"):
        write_video(target, pattern(f=3, h=8, w=8), overwrite=True)
    assert listing(tmp_path) == ["frames"]  # old folder kept, temp folder removed
    np.testing.assert_array_equal(read_video(target)[0], GOOD)


# --- reading errors ------------------------------------------------------------------


def test_read_missing(tmp_path):
    with pytest.raises(VideoNotFoundError, match=r"video not found: .*nope\.mp4") as info:
        read_video(tmp_path / "nope.mp4")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, VideoIOError)


def test_read_corrupt_and_pickled(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoIOError, match=r"could not read .*bad\.mp4"):
        read_video(tmp_path / "bad.mp4")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(VideoIOError, match=r"could not read .*obj\.npy"):
        read_video(tmp_path / "obj.npy")  # never unpickled
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoIOError, match="no PNG frames"):
        read_video(tmp_path / "empty")
