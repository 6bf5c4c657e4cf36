"""Source files for the upload, edit and control tests: small videos in every format t2v takes, OpenPose JSON,
and an in-process client of the server's ASGI app (FastAPI's TestClient, no socket)."""

import json
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from t2v.server import create_app
from t2v.video_io import write_video


BASE_URL = "http://127.0.0.1"  # a Host the Guard answers to


def square_video(frames: int = 5, height: int = 40, width: int = 48, color=(255, 64, 0), step: int = 4):
    """A square moving right on black, uint8 [F, H, W, 3]."""
    video = np.zeros((frames, height, width, 3), np.uint8)
    for k in range(frames):
        video[k, 10:26, 4 + step * k : 20 + step * k] = color
    return video


def pose_frame(points: dict[int, tuple[float, float]]) -> dict:
    """An OpenPose frame of one person: the given COCO-18 joints seen, the others not."""
    flat = []
    for j in range(18):
        x, y = points.get(j, (0, 0))
        flat += [x, y, 0.9 if j in points else 0]
    return {"people": [{"pose_keypoints_2d": flat}]}


POINTS = {0: (16, 6), 1: (16, 12), 2: (11, 12), 5: (21, 12), 8: (13, 24), 11: (19, 24)}  # in 32x32 pixels


def write_sources(folder: Path) -> Path:
    """src.mp4, src.webm, src.gif (5 frames of 48x40 at 12 fps) and pose.json (3 frames) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in ("mp4", "webm", "gif"):
        write_video(folder / f"src.{suffix}", square_video(), fps=12, overwrite=True)
    (folder / "pose.json").write_text(json.dumps([pose_frame(POINTS)] * 3))
    return folder


def client_for(queue, token: str | None = None, ui: bool = False, **kwargs) -> TestClient:
    """A client of the server's whole ASGI app (the Guard included) over `queue`; `with` it to run the worker."""
    return TestClient(create_app(queue, token, ui=ui), base_url=BASE_URL, **kwargs)


def upload(client, path: Path, name: str | None = None, **kwargs):
    """POST /v1/uploads with the file at `path` (sent under `name`, default its own)."""
    return client.post("/v1/uploads", files={"file": (name or path.name, path.read_bytes())}, **kwargs)
