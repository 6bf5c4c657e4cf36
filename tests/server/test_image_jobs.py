"""Image and zero-shot jobs (`"task": "image"` / `"zero-shot"`) end to end: a real `t2v serve` with a tiny
video model and a tiny random Stable Diffusion-layout picture model (--image-model), driven by httpx and
gradio_client; and in-process: the cost limit, a server without a picture model, an interrupted job.
"""

import io
import json
import sqlite3
import time

import httpx
import pytest
from PIL import Image
from server_process import Server
from tiny2d import save_tiny_sd

from t2v.server.jobs import JobError, JobQueue
from t2v.server.limits import Limits
from t2v.server.tasks import check_job
from t2v.video_io import read_video


PROMPT = "a red circle on a black background"
IMAGE = {"task": "image", "prompt": PROMPT, "num_inference_steps": 2, "height": 32, "width": 32}
ZERO = {"task": "zero-shot", "prompt": PROMPT, "num_frames": 3, "num_inference_steps": 4, "motion_x": 2.0}
# defaults small enough for fast jobs; t0/t1 at steps 2/3 of 4; the Shapes planner's prompt warnings
DEFAULTS = {"num_inference_steps": 2, "zero_shot_steps": 4, "t0": 2, "t1": 3, "video_length": 3, "regions": "shapes"}


def save_tiny_image_model(path):
    """A tiny random SD-layout text-to-image model (32x32 pictures), saved as diffusers saves one."""
    return save_tiny_sd(path, **DEFAULTS)


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    return save_tiny_image_model(tmp_path_factory.mktemp("image-model") / "tiny-image")


@pytest.fixture(scope="module")
def server(tiny_model, image_model, tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("srv") / "data", tiny_model, "--image-model", str(image_model))
    try:
        yield srv.start()
    finally:
        srv.kill()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def submit(client, **params) -> dict:
    r = client.post("/v1/jobs", json=params)
    assert r.status_code == 202, r.text
    return r.json()


def wait(client, job_id, statuses=("succeeded", "failed", "cancelled"), timeout=60, until=None) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses and (until is None or until(job)):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")


# ---------------------------------------------------------------- the API
def test_image_job_makes_a_png(client, server):
    job = submit(client, seed=5, **IMAGE)
    assert job["task"] == "image" and job["params"]["task"] == "image" and job["seed"] == 5
    done = client.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
    assert done["status"] == "succeeded", done
    assert done["image_url"] == f"/v1/jobs/{job['id']}/image" and done["video_url"] is None
    assert done["progress"] == 1 and done["step"] == done["total_steps"] == 2
    assert done["result"]["height"] == done["result"]["width"] == 32
    r = client.get(done["image_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    png = r.content
    assert Image.open(io.BytesIO(png)).size == (32, 32)
    assert (server.data_dir / "videos" / f"{job['id']}.png").is_file()  # named by the server's UUID
    attachment = client.get(done["image_url"], params={"download": 1})
    assert "attachment" in attachment.headers["content-disposition"] and attachment.content == png
    r = client.get(f"/v1/jobs/{job['id']}/video")
    assert r.status_code == 409 and "image job" in r.json()["detail"] and done["image_url"] in r.json()["detail"]
    again = wait(client, submit(client, seed=5, **IMAGE)["id"])  # the same seed: the same picture
    assert client.get(again["image_url"]).content == png
    default = wait(client, submit(client, task="image", prompt=PROMPT, scheduler="euler-a")["id"])  # model defaults
    assert default["status"] == "succeeded" and default["params"]["num_inference_steps"] == 2, default
    assert default["params"]["height"] == 32 and isinstance(default["seed"], int)


def test_zero_shot_job_makes_an_mp4(client, tmp_path):
    job = submit(client, seed=1, fps=4, **ZERO)
    assert job["task"] == "zero-shot" and job["total_steps"] == 5  # frame 0 to t0, then all frames from t1
    done = wait(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["video_url"] == f"/v1/jobs/{job['id']}/video" and done["image_url"] is None
    assert done["step"] == done["total_steps"] == 5 and done["result"]["num_frames"] == 3
    p = done["params"]
    assert (p["t0"], p["t1"], p["zoom"], p["warp"], p["motion_x"]) == (2, 3, 1.0, "latent", 2.0), p
    (tmp_path / "v.mp4").write_bytes(client.get(done["video_url"]).content)
    frames, fps = read_video(tmp_path / "v.mp4")
    assert frames.shape == (3, 32, 32, 3) and fps == 4
    r = client.get(done["video_url"], params={"format": "gif"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    r = client.get(f"/v1/jobs/{job['id']}/image")
    assert r.status_code == 409 and "zero-shot job" in r.json()["detail"]
    preset = submit(client, task="zero-shot", prompt=PROMPT, motion="static", zoom=1.1, scheduler="dpm++")
    preset = wait(client, preset["id"])
    assert preset["status"] == "succeeded" and preset["params"]["num_frames"] == 3, preset


BAD = [
    ({"task": "paint"}, "task", "'generate', 'image', 'zero-shot', 'edit', 'control' or 'tune'"),
    ({**ZERO, "zoom": 0}, "zoom", "zoom must be a scale per frame in [0.5, 2]"),
    ({**ZERO, "motion_x": 100}, "motion_x", "pixels per frame in [-64, 64]"),
    ({**ZERO, "motion_x": None, "motion": "wobble"}, "motion", "unknown motion 'wobble'"),
    ({**ZERO, "motion": "static"}, "motion", "either a motion preset or motion_x / motion_y"),
    ({**ZERO, "storyboard": "scenes: [{prompt: a, frames: 2}]"}, "storyboard", "not a parameter of zero-shot jobs"),
    ({**ZERO, "regions": True}, "regions", "not a parameter of zero-shot jobs"),
    ({**ZERO, "t0": 3, "t1": 2}, "t0", "need 0 <= t0 < t1 < steps"),
    ({**ZERO, "chunk_size": 1}, "chunk_size", "at least 2"),
    ({**ZERO, "warp": "sideways"}, "warp", "warp must be one of latent, pixel"),
    ({**ZERO, "num_frames": 257}, "num_frames", "at most 256 on this server"),
    ({**ZERO, "num_inference_steps": 1}, "t0", "t0 < t1 < steps"),
    ({**ZERO, "scheduler": "euler"}, "scheduler", "euler is not one"),
    ({**IMAGE, "num_frames": 3}, "num_frames", "not a parameter of image jobs"),
    ({**IMAGE, "motion_x": 1.0}, "motion_x", "not a parameter of image jobs"),
    ({**IMAGE, "fps": 8}, "fps", "not a parameter of image jobs"),
    ({**IMAGE, "height": 36}, "height", "multiple of 8"),
    ({**IMAGE, "width": 2048}, "width", "at most 1024 on this server"),
    ({**IMAGE, "num_inference_steps": 1001}, "num_inference_steps", "at most 999 for this model"),
    ({**IMAGE, "prompt": "x" * 1001}, "prompt", "at most 1000 on this server"),
    ({**IMAGE, "prompt": None}, "prompt", "prompt must be a non-empty string"),
    ({**IMAGE, "scheduler": "magic"}, "scheduler", "unknown scheduler 'magic'"),
    ({**IMAGE, "seed": -1}, "seed", "seed must be an integer in [0, 2**63)"),
    ({"prompt": PROMPT, "motion_x": 1.0}, "motion_x", "not a parameter of generate jobs"),
    ({"task": "generate", "prompt": PROMPT, "t0": 1}, "t0", "not a parameter of generate jobs"),
]


@pytest.mark.parametrize("body, field, reason", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_parameters_422(client, body, field, reason):
    r = client.post("/v1/jobs", json={k: v for k, v in body.items() if v is not None})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", field] and reason in detail["msg"], detail


def test_replies_do_not_grow_with_the_request(client):
    for body in ({**ZERO, "t0": 10**400}, {**ZERO, "motion_x": None, "motion": "m" * 5000}):
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 422 and len(r.content) < 600, r.text


def test_cost_limit(client, image_model):
    r = client.post("/v1/jobs", json={**IMAGE, "height": 1024, "width": 1024, "num_inference_steps": 999})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"], r.text
    assert "(a 1024x1024 picture in 999 steps); at most 100 on this server" in r.json()["detail"][0]["msg"]
    from t2v.pipelines.text_to_image import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained(str(image_model))
    limits = Limits(max_cost=0.01)
    assert check_job({**IMAGE, "num_inference_steps": 9}, None, lambda: pipe, limits, "cpu")["task"] == "image"
    with pytest.raises(JobError, match=r"0\.01024 megapixel-steps \(a 32x32 picture in 10 steps\)") as e:
        check_job({**IMAGE, "num_inference_steps": 10}, None, lambda: pipe, limits, "cpu")  # 32 x 32 x 10
    assert e.value.field == ""
    with pytest.raises(JobError, match=r"0\.01229 megapixel-steps \(3 frames of 32x32 in 4 steps\)"):
        check_job(ZERO, None, lambda: pipe, limits, "cpu")
    with pytest.raises(JobError, match="at most 2 on this server") as e:
        check_job({**ZERO, "num_frames": 3}, None, lambda: pipe, Limits(max_frames=2), "cpu")
    assert e.value.field == "num_frames"


def test_cancel_and_purge(client, server):
    videos = server.data_dir / "videos"
    slow = {"num_inference_steps": 500, "height": 64, "width": 64}  # about 20 s: cancelled while it runs
    for body in ({**IMAGE, **slow}, {**ZERO, "num_frames": 2, **slow}):
        running = submit(client, **body)
        wait(client, running["id"], ("running",), until=lambda j: j["step"] >= 2)
        r = client.delete(f"/v1/jobs/{running['id']}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        after = wait(client, submit(client, **IMAGE)["id"], timeout=30)  # the worker stopped it and goes on
        assert after["status"] == "succeeded"
        job = client.get(f"/v1/jobs/{running['id']}").json()
        assert job["status"] == "cancelled" and job["image_url"] is None and job["video_url"] is None
        assert job["result"]["stopped_at_step"] - job["result"]["cancelled_at_step"] <= 2, job["result"]
        assert not list(videos.glob(f"{running['id']}.*"))
    r = client.get(f"/v1/jobs/{running['id']}/video")
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]
    picture = wait(client, submit(client, **IMAGE)["id"])
    assert client.get(picture["image_url"]).status_code == 200 and (videos / f"{picture['id']}.png").is_file()
    assert client.delete(f"/v1/jobs/{picture['id']}", params={"purge": "true"}).status_code == 204
    assert not list(videos.glob(f"{picture['id']}.*"))
    assert client.get(picture["image_url"]).status_code == 404
    assert client.get("/v1/jobs/not-a-uuid/image").status_code == 404


def test_web_app_tabs_submit_to_the_same_queue(server, client):
    from gradio_client import Client

    app = Client(server.url + "/", verbose=False, download_files=False)
    html = app.predict(PROMPT, "", 2, 7.5, 3, api_name="/image")  # prompt, negative, steps, guidance, seed
    job = client.get(f"/v1/jobs/{html.split('job ')[-1].split('<')[0].strip()}").json()
    assert job["status"] == "succeeded" and job["source"] == "app" and job["task"] == "image", job
    assert f'src="{job["image_url"]}"' in html and "?download=1" in html and job["seed"] == 3
    # prompt, negative, motion x, motion y, zoom, frames, steps, guidance, seed
    html = app.predict(PROMPT, "", 1.5, -1.0, 1.05, 3, 4, 7.5, 4, api_name="/zero_shot")
    job = client.get(f"/v1/jobs/{html.split('job ')[-1].split('<')[0].strip()}").json()
    assert job["status"] == "succeeded" and job["source"] == "app" and job["task"] == "zero-shot", job
    p = job["params"]
    assert (p["motion_x"], p["motion_y"], p["zoom"], p["num_frames"]) == (1.5, -1.0, 1.05, 3)
    assert f'src="{job["video_url"]}"' in html
    with pytest.raises(Exception, match="prompt"):  # the queue's checks, shown in the page
        app.predict("", "", 0, 0, 1, 3, 2, 7.5, 1, api_name="/zero_shot")
    ready = client.get("/readyz").json()
    assert ready["image_model_loaded"] is True and ready["image_model"].endswith("tiny-image")


def test_the_log_has_no_traceback_and_no_500(server):  # (after the tests above, on the same server)
    log = server.log_text()  # (Gradio logs the error a page is shown, gr.Error, with its traceback)
    assert log.count("Traceback") == log.count("gradio.exceptions.Error: "), log[-3000:]
    assert '" 500 ' not in log and "Exception in ASGI" not in log, log[-3000:]


# ---------------------------------------------------------------- in-process: no server
def close(queue):
    queue.db.close()
    queue._lock_file.close()


def test_a_server_without_a_picture_model(tiny_model, tmp_path, monkeypatch, capsys):
    """The embedded picture model not installed: the server starts, says so, and refuses those jobs."""
    import t2v.models.loading as loading
    import t2v.zero_shot
    from t2v.server import load_image_model
    from t2v.server.app import build_ui

    monkeypatch.setattr(loading, "DEFAULT_IMAGE_MODEL_DIR", tmp_path / "not-installed")
    monkeypatch.setattr(t2v.zero_shot, "_cache", {})  # (an earlier test may have loaded the embedded one)
    queue = JobQueue(tmp_path / "data", model=str(tiny_model), device="cpu")
    try:
        queue.load()
        assert load_image_model(queue) is False and "note: no image model" in capsys.readouterr().out
        for body in (IMAGE, ZERO):
            with pytest.raises(JobError, match="t2v-shapes-image is not installed on this server") as e:
                queue.submit(body)
            assert e.value.field == "task"
        with pytest.raises(JobError) as e:  # the request's own checks come first
            queue.submit({**ZERO, "zoom": 0})
        assert e.value.field == "zoom"
        assert queue.submit({"prompt": PROMPT, "num_frames": 2})["task"] == "generate"  # videos still run
        demo = build_ui(queue)  # the tabs are there, saying why they cannot work
        text = json.dumps(demo.config)
        assert '"Zero-shot"' in text and '"Image"' in text and "is not installed on this server" in text
        queue.image_model = str(tmp_path / "nowhere")
        with pytest.raises(ValueError, match="image model: model directory .* does not exist"):
            load_image_model(queue)  # one asked for must load
    finally:
        close(queue)


def test_an_interrupted_image_job_runs_again_with_its_seed(image_model, tmp_path):
    """A picture job that was running when the server died: queued again at start-up, then made with the
    seed it was given, the picture the same as the one a fresh job with that seed makes."""
    data = tmp_path / "data"
    close(JobQueue(data, device="cpu"))
    params = {**IMAGE, "seed": 11, "guidance_scale": 7.5}
    db = sqlite3.connect(data / "jobs.db", isolation_level=None)
    for job_id, status, p in (("cut", "running", params), ("old", "succeeded", {"prompt": "a", "seed": 1})):
        db.execute(
            "INSERT INTO jobs (id, status, params, source, created, attempts) VALUES (?, ?, ?, 'api', ?, 1)",
            (job_id, status, json.dumps(p), time.time()),
        )
    db.close()
    (data / "videos" / ".cut.png.tmp").write_bytes(b"half")  # as write_image leaves a picture cut short
    queue = JobQueue(data, device="cpu", image_model=str(image_model))
    try:
        assert queue.get("cut")["status"] == "queued" and not (data / "videos" / ".cut.png.tmp").exists()
        legacy = queue.get("old")  # a row from before tasks: a video job
        assert legacy["task"] == "generate" and legacy["video_url"] == "/v1/jobs/old/video"
        assert legacy["image_url"] is None
        queue.load_image()
        fresh = queue.submit(params)["id"]
        queue.start()
        deadline = time.time() + 60
        while time.time() < deadline and {queue.get(j)["status"] for j in ("cut", fresh)} != {"succeeded"}:
            time.sleep(0.05)
        assert queue.get("cut")["status"] == queue.get(fresh)["status"] == "succeeded", queue.get("cut")
        assert queue.get("cut")["attempts"] == 2
        assert queue.image_path("cut").read_bytes() == queue.image_path(fresh).read_bytes()
        assert queue.video_path("cut") is None  # a picture is not served as a video
    finally:
        queue.stop()
        close(queue)
