"""Edit and control jobs (`"task": "edit"` / `"control"`) end to end, in-process: the server's whole ASGI app
over a queue with tiny random models (a video model, an SD-layout picture model, an Instruct-Pix2Pix model,
a ControlNet for edges, depth and pose), its worker running. Uploads in, videos and control maps out; the
checks before a job is queued (a bad source, another task's field, the server's limits, a missing model);
and the web app's "Edit" and "Control" tabs."""

import dataclasses
import json
import time

import numpy as np
import pytest
from sources import client_for, upload, write_sources
from typer.testing import CliRunner

from t2v.server import load_video_models
from t2v.server.jobs import JobError, JobQueue
from t2v.server.tasks import check_job
from t2v.video_io import read_video, write_video
from t2v.video_jobs import resize_frames


EDIT_DEFAULTS = {"num_inference_steps": 2, "guidance_scale": 3.0, "image_guidance_scale": 1.5}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny models and the sources (a video, a video of edge maps, OpenPose JSON)."""
    from tiny2d import save_tiny_sd, tiny_sd_components
    from tiny_control import tiny_controlnet
    from tiny_edit import tiny_edit_pipeline

    from t2v.controls import canny_maps
    from t2v.models.loading import save_model

    root = tmp_path_factory.mktemp("models")
    save_tiny_sd(root / "sd", num_inference_steps=2)
    meta = {"defaults": EDIT_DEFAULTS}
    save_model(tiny_edit_pipeline(), root / "edit", class_name="StableDiffusionInstructPix2PixPipeline", meta=meta)
    tiny_controlnet(tiny_sd_components()["unet"]).save_pretrained(root / "controlnet")
    sources = write_sources(root / "sources")
    frames, _ = read_video(sources / "src.mp4")
    write_video(sources / "maps.mp4", canny_maps(frames), fps=12)
    return root


@pytest.fixture(scope="module")
def queue(models, tiny_model, tmp_path_factory):
    net = str(models / "controlnet")
    q = JobQueue(
        tmp_path_factory.mktemp("srv") / "data",
        model=str(tiny_model),
        device="cpu",
        image_model=str(models / "sd"),
        edit_model=str(models / "edit"),
        controlnets={"edges": net, "depth": net, "pose": net},
    )
    q.load()
    q.load_image()
    assert load_video_models(q) is True
    yield q
    q.stop()
    q.db.close()
    q._lock_file.close()


@pytest.fixture(scope="module")
def client(queue):
    with client_for(queue) as c:  # (its lifespan runs the worker)
        yield c


@pytest.fixture(scope="module")
def sources(client, models):
    """The ids of the uploaded sources: "video", "maps", "pose"."""
    folder = models / "sources"
    return {
        name: upload(client, folder / file).json()["id"]
        for name, file in (("video", "src.mp4"), ("maps", "maps.mp4"), ("pose", "pose.json"))
    }


def submit(client, **body) -> dict:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def finished(client, job_id) -> dict:
    deadline = time.time() + 60
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", params={"wait": 10}).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
    raise AssertionError(f"job {job_id} did not end")


def client_file(client, upload_id, tmp_path):
    r = client.get(f"/v1/uploads/{upload_id}/file")
    assert r.status_code == 200
    path = tmp_path / f"upload-{upload_id}.{r.headers['content-type'].split('/')[-1]}"
    path.write_bytes(r.content)
    return path


def count_uploads(queue) -> int:
    with queue.lock:
        return queue.db.execute("SELECT COUNT(*) FROM uploads").fetchone()[0]


def video(client, url, tmp_path, name="v.mp4"):
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4", r.text[:300]
    (tmp_path / name).write_bytes(r.content)
    return read_video(tmp_path / name)


# ---------------------------------------------------------------- jobs
def test_edit_job_makes_the_edited_video(client, sources, tmp_path):
    job = submit(client, task="edit", source=sources["video"], prompt="make the square blue", seed=3, chunk_size=2)
    p = job["params"]
    assert job["task"] == "edit" and p["source"] == sources["video"] and job["source"] == "api"
    assert (p["num_frames"], p["num_inference_steps"], p["image_guidance_scale"], p["guidance_scale"]) == (
        5,
        2,
        1.5,
        3,
    )
    assert job["total_steps"] == 2 * 4  # its steps for each chunk: frame 0 and one new frame each
    done = finished(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["step"] == done["total_steps"] and done["control_url"] is None
    frames, fps = video(client, done["video_url"], tmp_path)
    assert frames.shape == (5, 32, 32, 3) and fps == 12  # the source's frames and fps, the model's size
    again = finished(client, submit(client, **{**p, "task": "edit"})["id"])
    np.testing.assert_array_equal(video(client, again["video_url"], tmp_path, "again.mp4")[0], frames)  # the seed
    few = submit(client, task="edit", source=sources["video"], prompt="make it blue", num_frames=2, fps=4)
    few = finished(client, few["id"])
    assert few["result"]["num_frames"] == 2 and few["result"]["fps"] == 4, few
    r = client.get(f"/v1/jobs/{done['id']}/control")
    assert r.status_code == 409 and "only control jobs have control maps" in r.json()["detail"]
    assert client.get(f"/v1/uploads/{sources['video']}").json()["jobs"] == 3


def test_control_jobs_make_a_video_and_show_their_maps(client, sources, tmp_path):
    job = submit(client, task="control", control="edges", source=sources["video"], prompt="a red square", seed=1)
    assert job["params"]["conditioning_scale"] == 1.0 and job["params"]["as_map"] is False
    done = finished(client, job["id"])
    assert done["status"] == "succeeded" and done["control_url"] == f"/v1/jobs/{job['id']}/control", done
    frames, _ = video(client, done["video_url"], tmp_path)
    maps, _ = video(client, done["control_url"], tmp_path, "maps.mp4")
    assert frames.shape == maps.shape == (5, 32, 32, 3)
    assert (maps > 128).mean() < 0.5 and maps.max() > 128  # white edges on black
    r = client.get(done["control_url"], params={"format": "gif", "download": 1})
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    assert "attachment" in r.headers["content-disposition"]
    pose = submit(
        client, task="control", control="pose", source=sources["pose"], prompt="a person", pose_size=[32, 32]
    )
    pose = finished(client, pose["id"])
    assert pose["status"] == "succeeded" and pose["result"]["num_frames"] == 3 and pose["result"]["fps"] == 8, pose
    pose_maps, _ = video(client, pose["control_url"], tmp_path, "pose.mp4")
    assert pose_maps.reshape(-1, 3).max(axis=0).min() > 100  # OpenPose's colours
    depth = submit(client, task="control", control="depth", source=sources["maps"], prompt="a square", as_map=True)
    depth = finished(client, depth["id"])
    assert depth["status"] == "succeeded", depth
    followed = video(client, depth["control_url"], tmp_path, "d.mp4")[0].astype(float)
    uploaded = resize_frames(read_video(client_file(client, sources["maps"], tmp_path))[0], 32, 32).astype(float)
    assert np.abs(followed - uploaded).mean() < 20  # the maps as uploaded (resized, encoded again)


def test_a_job_and_its_files_go_together(client, queue, sources, models):
    own = upload(client, models / "sources" / "src.webm").json()
    job = finished(client, submit(client, task="control", control="edges", source=own["id"], prompt="a")["id"])
    videos = queue.data_dir / "videos"
    assert sorted(p.name for p in videos.glob(f"{job['id']}*")) == [f"{job['id']}.control.mp4", f"{job['id']}.mp4"]
    assert client.get(job["control_url"], params={"format": "webm"}).status_code == 200
    assert client.delete(f"/v1/jobs/{job['id']}", params={"purge": "true"}).status_code == 204
    assert not list(videos.glob(f"{job['id']}*"))
    assert client.get(f"/v1/uploads/{own['id']}").status_code == 404  # its upload went with it
    assert not list((queue.data_dir / "uploads").glob(f"{own['id']}*"))


BAD = [
    ({"task": "edit", "source": "nope"}, "source", "no upload 'nope': upload the file with POST /v1/uploads first"),
    ({"task": "edit", "source": None}, "source", "source must be the id of an upload"),
    ({"task": "edit", "source": "POSE"}, "source", "edit jobs take a video"),
    ({"task": "control", "control": "pose"}, "source", "pose jobs take OpenPose JSON"),
    ({"task": "control", "control": "edges", "source": "POSE"}, "source", "control jobs take a video"),
    ({"task": "control", "control": "scribble"}, "control", "control must be one of edges, depth, pose"),
    ({"task": "control", "control": None}, "control", "control must be one of"),
    ({"task": "control", "control": "depth"}, "as_map", "needs a depth-estimation model and this server has none"),
    ({"task": "control", "control": "edges", "controlnet": "/etc"}, "controlnet", "Extra inputs are not permitted"),
    ({"task": "edit", "control": "edges"}, "control", "control is not a parameter of edit jobs"),
    ({"task": "edit", "motion_x": 1.0}, "motion_x", "not a parameter of edit jobs"),
    ({"task": "control", "image_guidance_scale": 1.0}, "image_guidance_scale", "not a parameter of control jobs"),
    ({"task": "image", "source": "VIDEO"}, "source", "not a parameter of image jobs"),
    ({"task": "edit", "num_frames": 6}, "num_frames", "num_frames is 6 but the source has 5 frames"),
    ({"task": "edit", "num_frames": 0}, "num_frames", "num_frames must be an integer >= 1"),
    ({"task": "edit", "chunk_size": 1}, "chunk_size", "chunk_size must be an integer in [2, 4096]"),
    ({"task": "edit", "image_guidance_scale": -1}, "image_guidance_scale", "must be a number in [0, 100]"),
    ({"task": "edit", "shared_noise": "maybe"}, "shared_noise", "valid boolean"),
    ({"task": "control", "conditioning_scale": 1000}, "conditioning_scale", "must be a number in [0, 100]"),
    ({"task": "control", "pose_size": [32, 32]}, "pose_size", "pose_size is for poses from OpenPose JSON"),
    ({"task": "control", "pose_size": [32]}, "pose_size", "at least 2 items"),
    ({"task": "control", "control": "pose", "source": "POSE", "pose_size": [0, 5]}, "pose_size", "two integers"),
    ({"task": "edit", "height": 36}, "height", "multiple of 8"),
    ({"task": "edit", "width": 2048}, "width", "at most 1024 on this server"),
    ({"task": "control", "num_inference_steps": 1001}, "num_inference_steps", "at most 999 for this model"),
    ({"task": "edit", "prompt": None}, "prompt", "instruction must be a non-empty string"),
    ({"task": "edit", "prompt": "x" * 1001}, "prompt", "at most 1000 on this server"),
    ({"task": "edit", "fps": 0}, "fps", "fps must be"),
    ({"task": "edit", "scheduler": "magic"}, "scheduler", "unknown scheduler 'magic'"),
]


@pytest.mark.parametrize("change, field, reason", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_jobs_are_422_naming_the_field(client, sources, change, field, reason):
    base = {"source": sources["video"], "prompt": "make it blue", "control": "edges"}
    body = {k: v for k, v in {**base, **change}.items() if v is not None}
    if body["task"] == "edit" and "control" not in change:
        body.pop("control")
    if body["task"] == "image":
        body = {k: v for k, v in body.items() if k != "control"}
    body["source"] = {"POSE": sources["pose"], "VIDEO": sources["video"]}.get(body.get("source"), body.get("source"))
    r = client.post("/v1/jobs", json={k: v for k, v in body.items() if v is not None})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", field] and reason in detail["msg"], detail
    assert len(r.content) < 800


def test_the_servers_limits_apply(queue, sources):
    body = {"task": "edit", "source": sources["video"], "prompt": "make it blue"}

    def check(limits, **change):
        return check_job({**body, **change}, None, queue.image_pipeline, limits, "cpu", server=queue)

    limits = dataclasses.replace(queue.limits, max_cost=0.01)
    with pytest.raises(JobError, match=r"0\.01024 megapixel-steps \(5 frames of 32x32 in 2 steps\)") as e:
        check(limits)
    assert e.value.field == ""
    assert check(limits, num_frames=4)["num_frames"] == 4
    limits = dataclasses.replace(queue.limits, max_frames=4)
    with pytest.raises(JobError, match="use 5 frames of the source; at most 4 on this server") as e:
        check(limits)
    assert e.value.field == "num_frames"
    with pytest.raises(JobError, match="num_inference_steps is 3; at most 2 on this server"):
        check(dataclasses.replace(queue.limits, max_steps=2), num_inference_steps=3)
    with pytest.raises(JobError, match="height is 64; at most 32 on this server"):
        check(dataclasses.replace(queue.limits, max_size=32), task="control", control="edges", height=64)


# ---------------------------------------------------------------- a server without the models
def test_a_server_without_the_edit_model_or_a_controlnet(tiny_model, models, tmp_path, monkeypatch, capsys):
    import t2v.models.loading as loading

    monkeypatch.setattr(loading, "DEFAULT_EDIT_MODEL_DIR", tmp_path / "not-installed")
    q = JobQueue(tmp_path / "data", device="cpu", image_model=str(models / "sd"))
    try:
        assert load_video_models(q) is False and "note: no edit model" in capsys.readouterr().out
        source = q.uploads.add_path(models / "sources" / "src.mp4")["id"]
        with pytest.raises(JobError, match="the embedded t2v-shapes-edit is not installed on this server") as e:
            q.submit({"task": "edit", "source": source, "prompt": "make it blue"})
        assert e.value.field == "task"
        with pytest.raises(JobError, match=r"no edges ControlNet.*--controlnet edges=DIR") as e:
            q.submit({"task": "control", "control": "edges", "source": source, "prompt": "a"})
        assert e.value.field == "control"
        q.edit_model, q.controlnets = str(tmp_path / "nowhere"), {}
        with pytest.raises(ValueError, match="edit model: model directory .* does not exist"):
            load_video_models(q)  # one asked for must load
        q.controlnets = {"edges": str(tmp_path / "nowhere")}
        with pytest.raises(ValueError, match="controlnet edges: ControlNet folder .* does not exist"):
            load_video_models(q)
    finally:
        q.db.close()
        q._lock_file.close()


def test_serve_takes_controlnets_by_kind():
    from t2v.cli import app

    for value, words in (("scribble=/x", "KIND one of edges, depth, pose"), ("edges", "KIND=DIR")):
        r = CliRunner().invoke(app, ["serve", "--device", "cpu", "--controlnet", value])
        assert r.exit_code == 2 and words in r.output, r.output
    r = CliRunner().invoke(app, ["serve", "--max-upload-mb", "0"])
    assert r.exit_code == 2 and "--max-upload-mb" in r.output
    r = CliRunner().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0 and "--controlnet" in r.output and "--edit-model" in r.output


# ---------------------------------------------------------------- the web app
def test_the_app_has_edit_and_control_tabs_that_submit_to_the_queue(queue, client, models, tmp_path):
    from t2v.server.app import build_ui

    demo = build_ui(queue)
    text = json.dumps(demo.config)
    assert '"Edit"' in text and '"Control"' in text and "ControlNets on this server: edges, depth, pose" in text
    fns = {fn.api_name: fn.fn for fn in demo.fns.values()}
    folder = models / "sources"
    # file, instruction, negative, image guidance, shared noise, frames, height, width, steps, guidance, seed
    html = fns["edit"](str(folder / "src.gif"), "make it blue", "", 1.5, False, 3, 32, 32, 2, 3.0, 7)
    job = client.get(f"/v1/jobs/{html.split('job ')[-1].split('<')[0].strip()}").json()
    assert job["status"] == "succeeded" and job["source"] == "app" and job["task"] == "edit", job
    assert job["params"]["num_frames"] == 3 and job["seed"] == 7
    upload_url = f"/v1/uploads/{job['params']['source']}/file"
    assert f'src="{upload_url}"' in html and f'src="{job["video_url"]}"' in html  # the source beside the result
    # kind, file, prompt, negative, scale, as map, frames, height, width, steps, guidance, seed
    html = fns["control"]("pose", str(folder / "pose.json"), "a person", "", 0.5, False, 0, 32, 32, 2, 3.0, 1)
    job = client.get(f"/v1/jobs/{html.split('job ')[-1].split('<')[0].strip()}").json()
    assert job["status"] == "succeeded" and job["params"]["conditioning_scale"] == 0.5, job
    assert f'src="{job["control_url"]}"' in html and f'src="{job["video_url"]}"' in html  # the maps beside it
    waiting = count_uploads(queue)
    with pytest.raises(Exception, match="as_map: depth from a normal video needs a depth-estimation model"):
        fns["control"]("depth", str(folder / "src.mp4"), "a", "", 1.0, False, 0, 32, 32, 2, 3.0, 1)
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(Exception, match="source: the file must be a video"):
        fns["edit"](str(tmp_path / "notes.txt"), "x", "", 1.5, False, 0, 32, 32, 2, 3.0, 1)
    assert count_uploads(queue) == waiting  # refused: not kept


def test_the_apps_file_fields_take_uploads_up_to_the_limit(queue, models, monkeypatch):
    limit = 100_000
    monkeypatch.setattr(queue, "limits", dataclasses.replace(queue.limits, max_upload_bytes=limit))
    c = client_for(queue, ui=True)  # (not started: the module's client runs the worker)
    gif = (models / "sources" / "src.gif").read_bytes()
    small = c.post("/gradio_api/upload", files={"files": ("src.gif", gif)})
    assert small.status_code == 200 and small.json()[0].endswith("src.gif"), small.text
    r = c.post("/gradio_api/upload", files={"files": ("big.mp4", bytes(limit + 100_000))})
    assert r.status_code == 413 and "--max-upload-mb" in r.json()["detail"], r.text[:300]
    r = c.post("/gradio_api/upload", content=gif, headers={"content-type": "image/gif"})
    assert r.status_code == 415
