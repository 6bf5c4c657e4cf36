"""Tune jobs (`"task": "tune"`) and generate jobs from their models (`"tuned_model"`) end to end, in-process: the
server's whole ASGI app over a queue with tiny random models (a video model, and an SD-layout picture model that
inflates), its worker running. A clip uploaded, a model tuned on it, videos from its inversion and from noise;
the checks before a job is queued (a bad upload or model id, a tune job not finished, the server's limits); the
tuned model going with its job; and the web app's "Tune" tab."""

import dataclasses
import json
import time
import uuid

import numpy as np
import pytest
import torch
from sources import client_for, square_video, upload, write_sources

from t2v.server.jobs import JobError, JobQueue
from t2v.server.tasks import check_job
from t2v.video_io import read_video, write_video


CAPTION = "a red square moving right"
TUNE = {"task": "tune", "prompt": CAPTION, "steps": 3, "seed": 1}  # (+ "source")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny SD-layout picture model that inflates (16x16 pictures, as tests/test_cli_tune.py's), and sources: a
    clip of 6 frames and OpenPose JSON."""
    from diffusers import StableDiffusionPipeline
    from tiny_tune import tiny_parts, tiny_unet2d

    root = tmp_path_factory.mktemp("tune-models")
    unet = tiny_unet2d()
    with torch.no_grad():  # a smooth noise predictor, as trained models are (DDIM inversion assumes it)
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    sd = StableDiffusionPipeline(**tiny_parts(), unet=unet, safety_checker=None, feature_extractor=None,
                                 requires_safety_checker=False)  # fmt: skip
    sd.save_pretrained(root / "sd", safe_serialization=True)
    sources = write_sources(root / "sources")
    write_video(sources / "clip.mp4", square_video(6), fps=8)
    return root


def new_queue(data_dir, tiny_model, models, **kwargs) -> JobQueue:
    q = JobQueue(data_dir, model=str(tiny_model), device="cpu", image_model=str(models / "sd"), **kwargs)
    q.load()
    q.load_image()
    return q


def close(q: JobQueue) -> None:
    q.stop()
    q.db.close()
    q._lock_file.close()


@pytest.fixture(scope="module")
def queue(models, tiny_model, tmp_path_factory):
    q = new_queue(tmp_path_factory.mktemp("srv") / "data", tiny_model, models)
    yield q
    close(q)


@pytest.fixture(scope="module")
def client(queue):
    with client_for(queue) as c:  # (its lifespan runs the worker)
        yield c


@pytest.fixture(scope="module")
def tuned(client, models):
    """A succeeded tune job on the uploaded clip."""
    source = upload(client, models / "sources" / "clip.mp4").json()["id"]
    job = submit(client, **TUNE, source=source)
    return finished(client, job["id"])


@pytest.fixture
def idle(models, tiny_model, tmp_path):
    """A queue whose worker does not run: its jobs stay queued until the test runs them."""
    q = new_queue(tmp_path / "data", tiny_model, models)
    yield q
    close(q)


def submit(client, **body) -> dict:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def finished(client, job_id) -> dict:
    deadline = time.time() + 120
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", params={"wait": 10}).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
    raise AssertionError(f"job {job_id} did not end")


def video(client, url, tmp_path, name="v.mp4"):
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4", r.text[:300]
    (tmp_path / name).write_bytes(r.content)
    return read_video(tmp_path / name)


def tune_body(q: JobQueue, models, **change) -> dict:
    return {**TUNE, "source": q.uploads.add_path(models / "sources" / "clip.mp4")["id"], **change}


# ---------------------------------------------------------------- jobs
def test_a_tune_job_makes_a_model_named_by_its_id(tuned, queue, client):
    assert tuned["status"] == "succeeded", tuned
    p, r = tuned["params"], tuned["result"]
    assert p == {**TUNE, "source": p["source"], "num_frames": 6, "height": 16, "width": 16, "lr": 1e-3}
    assert r["model"] == tuned["id"] and (r["num_frames"], r["height"], r["width"], r["steps"]) == (6, 16, 16, 3)
    assert tuned["step"] == tuned["total_steps"] == 3 and tuned["video_url"] is None
    folder = queue.data_dir / "models" / tuned["id"]
    meta = json.loads((folder / "t2v_model.json").read_text())
    assert meta["tuned"]["caption"] == CAPTION and meta["tuned"]["steps"] == 3 and meta["tuned"]["seed"] == 1
    assert (folder / "inversion" / "latents.safetensors").is_file()
    assert sorted(p.name for p in folder.parent.iterdir()) == [tuned["id"]]  # no work folder left
    r = client.get(f"/v1/jobs/{tuned['id']}/video")
    assert r.status_code == 409 and "generate jobs take its model as tuned_model" in r.json()["detail"]
    assert client.get(f"/v1/uploads/{p['source']}").json()["jobs"] == 1  # the clip is kept with its job


def test_progress_is_reported_per_tuning_step(idle, models):
    job = idle.submit(tune_body(idle, models, steps=2))
    assert job["total_steps"] == 2 and job["step"] == 0
    seen = []

    class Live(dict):  # the running job's progress, as the API reads it
        def __setitem__(self, key, value):
            seen.append((value["step"], value["total"]))
            super().__setitem__(key, value)

    idle.live = Live()
    idle._run(idle._next()["id"], job["params"])
    assert seen == [(0, 2), (1, 2), (2, 2)]
    assert idle.get(job["id"])["status"] == "succeeded"


def test_generate_from_the_tuned_model_starts_from_its_inversion_by_default(tuned, client, tmp_path):
    model = tuned["id"]
    job = submit(client, prompt="a blue square moving right", tuned_model=model, seed=3)
    p = job["params"]
    assert p["tuned_model"] == model and p["invert"] is True and job["task"] == "generate"
    assert (p["num_frames"], p["height"], p["width"], p["num_inference_steps"]) == (6, 16, 16, 25)  # the inversion's
    done = finished(client, job["id"])
    assert done["status"] == "succeeded" and done["step"] == 25, done
    frames, _ = video(client, done["video_url"], tmp_path)
    assert frames.shape == (6, 16, 16, 3)
    other = finished(client, submit(client, **{**p, "seed": 4})["id"])  # DDIM from the same latents: no noise drawn
    np.testing.assert_array_equal(video(client, other["video_url"], tmp_path, "seed4.mp4")[0], frames)
    noise = submit(client, prompt="a blue square moving right", tuned_model=model, invert=False, seed=3, num_frames=4)
    assert noise["params"]["invert"] is False and noise["params"]["num_frames"] == 4
    noise = finished(client, noise["id"])
    assert noise["status"] == "succeeded", noise
    assert video(client, noise["video_url"], tmp_path, "noise.mp4")[0].shape == (4, 16, 16, 3)
    plain = finished(client, submit(client, prompt="a red circle moving right", seed=1, num_inference_steps=2)["id"])
    assert plain["status"] == "succeeded" and "invert" not in plain["params"]  # the text-to-video model, as before


BAD = [
    ({"task": "tune", "source": "nope"}, "source", "no upload 'nope': upload the file with POST /v1/uploads first"),
    ({"task": "tune", "source": "POSE"}, "source", "tune jobs take a video"),
    ({"task": "tune", "prompt": None}, "prompt", "prompt must be a non-empty string"),
    ({"task": "tune", "prompt": "x" * 1001}, "prompt", "at most 1000 on this server"),
    ({"task": "tune", "num_frames": 7}, "num_frames", "has 6 frames, fewer than the 7 asked for"),
    ({"task": "tune", "num_frames": 1}, "num_frames", "num_frames must be an integer in [2, 128]"),
    ({"task": "tune", "steps": 0}, "steps", "steps must be an integer in [1, 10000]"),
    ({"task": "tune", "steps": 1001}, "steps", "at most 1000 tuning steps on this server"),
    ({"task": "tune", "lr": 0}, "lr", "lr must be a number in (0, 1]"),
    ({"task": "tune", "height": 15}, "height", "multiple of 2"),
    ({"task": "tune", "num_inference_steps": 5}, "num_inference_steps", "not a parameter of tune jobs"),
    ({"task": "tune", "tuned_model": "MODEL"}, "tuned_model", "not a parameter of tune jobs"),
    ({"tuned_model": "nope"}, "tuned_model", "no tune job 'nope': tune a model first"),
    ({"tuned_model": str(uuid.uuid4())}, "tuned_model", "no tune job"),
    ({"tuned_model": 5}, "tuned_model", "valid string"),
    ({"tuned_model": "MODEL", "num_frames": 4}, "num_frames", "num_frames must be the inversion's 6"),
    ({"tuned_model": "MODEL", "scheduler": "euler"}, "scheduler", "needs the ddim scheduler"),
    (
        {"tuned_model": "MODEL", "prompt": None, "storyboard": "scenes: [{prompt: a, frames: 4}]", "invert": True},
        "invert",
        "starts one prompt, not a storyboard",
    ),
    ({"invert": True}, "invert", "this model has no inversion to start from"),
    ({"steps": 3}, "steps", "steps is not a parameter of generate jobs"),
    ({"task": "image", "tuned_model": "MODEL"}, "tuned_model", "not a parameter of image jobs"),
    ({"task": "edit", "invert": True, "source": "VIDEO"}, "invert", "not a parameter of edit jobs"),
]


@pytest.mark.parametrize("change, field, reason", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_jobs_are_422_naming_the_field(client, tuned, queue, models, change, field, reason):
    ids = {"MODEL": tuned["id"], "VIDEO": tuned["params"]["source"]}
    ids["POSE"] = queue.uploads.add_path(models / "sources" / "pose.json")["id"] if change.get("source") else None
    body = {
        "prompt": "a blue square moving right",
        **({"source": ids["VIDEO"]} if change.get("task") == "tune" else {}),
    }
    body = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in {**body, **change}.items()}
    r = client.post("/v1/jobs", json={k: v for k, v in body.items() if v is not None})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", field] and reason in detail["msg"], detail
    assert len(r.content) < 800


def test_a_tune_job_not_finished_or_that_made_no_model_is_422(idle, models):
    job = idle.submit(tune_body(idle, models))
    generate = {"prompt": "a blue square", "tuned_model": job["id"]}
    with pytest.raises(JobError, match=f"tune job {job['id']} is queued: its model is not ready yet") as e:
        idle.submit(generate)
    assert e.value.field == "tuned_model"
    idle.cancel(job["id"])
    with pytest.raises(JobError, match="cancelled: it made no model"):
        idle.submit(generate)
    plain = idle.submit({"prompt": "a red circle", "num_inference_steps": 2})
    with pytest.raises(JobError, match=f"no tune job '{plain['id']}'"):  # a job, but not a tune job
        idle.submit({**generate, "tuned_model": plain["id"]})


def test_the_servers_limits_apply(idle, models):
    body = tune_body(idle, models)

    def check(limits, **change):
        return check_job({**body, **change}, None, idle.image_pipeline, limits, "cpu", server=idle)

    assert check(idle.limits)["steps"] == 3
    with pytest.raises(JobError, match="steps is 3; at most 2 tuning steps on this server") as e:
        check(dataclasses.replace(idle.limits, max_tune_steps=2))
    assert e.value.field == "steps"
    with pytest.raises(JobError, match="num_frames is 6; at most 4 on this server") as e:
        check(dataclasses.replace(idle.limits, max_frames=4))
    assert check(dataclasses.replace(idle.limits, max_frames=4), num_frames=4)["num_frames"] == 4
    with pytest.raises(JobError, match="height is 32; at most 16 on this server"):
        check(dataclasses.replace(idle.limits, max_size=16), height=32)
    # 6 frames of 16x16 in 3 tuning and 25 inversion steps
    cost = r"0\.04301 megapixel-steps \(tuning on and inverting 6 frames of 16x16 in 28 steps\)"
    with pytest.raises(JobError, match=cost) as e:
        check(dataclasses.replace(idle.limits, max_cost=0.04))
    assert e.value.field == ""
    limits = dataclasses.replace(idle.limits, max_tuned_models=1)
    idle.submit(body)
    with pytest.raises(JobError, match="keeps at most 1 tuned models and has 1") as e:
        check(limits)
    assert e.value.field == "task"


def test_a_cancelled_tune_leaves_nothing_and_a_stopped_one_keeps_its_work_folder(idle, models):
    models_dir = idle.data_dir / "models"
    job = idle.submit(tune_body(idle, models))
    idle._next()  # running
    idle.cancel(job["id"])  # stops at its next step
    idle._run(job["id"], job["params"])
    assert idle.get(job["id"])["status"] == "cancelled" and not list(models_dir.iterdir())
    job = idle.submit(tune_body(idle, models))
    idle._next()
    idle.stopping.set()  # the server stops: back to the queue, its work folder kept to resume from
    idle._run(job["id"], job["params"])
    assert idle.get(job["id"])["status"] == "queued"
    assert [p.name for p in models_dir.iterdir()] == [f".{job['id']}.tune"]
    stray = [models_dir / str(uuid.uuid4()), models_dir / f".{uuid.uuid4()}.tune", models_dir / "junk"]
    for path in stray[:2]:
        path.mkdir()
    stray[2].write_text("x")
    idle.tuned_models.sweep()  # (at start-up) what no job owns goes
    assert [p.name for p in models_dir.iterdir()] == [f".{job['id']}.tune"]
    idle.stopping.clear()
    idle._run(idle._next()["id"], job["params"])
    assert idle.get(job["id"])["status"] == "succeeded"
    assert [p.name for p in models_dir.iterdir()] == [job["id"]]


def test_the_tuned_model_goes_with_its_job_and_its_videos_stay(client, queue, models, tmp_path):
    source = upload(client, models / "sources" / "clip.mp4").json()["id"]
    tune = finished(client, submit(client, **{**TUNE, "source": source, "steps": 1})["id"])
    assert tune["status"] == "succeeded", tune
    made = finished(client, submit(client, prompt="a blue square", tuned_model=tune["id"])["id"])
    assert made["status"] == "succeeded", made
    assert client.delete(f"/v1/jobs/{tune['id']}", params={"purge": "true"}).status_code == 204
    assert not (queue.data_dir / "models" / tune["id"]).exists()
    assert client.get(f"/v1/uploads/{source}").status_code == 404  # its clip went with it
    assert video(client, made["video_url"], tmp_path)[0].shape == (6, 16, 16, 3)  # the video made from it stays
    r = client.post("/v1/jobs", json={"prompt": "a blue square", "tuned_model": tune["id"]})
    assert r.status_code == 422 and "no tune job" in r.json()["detail"][0]["msg"], r.text


def test_serve_takes_the_tune_limits():
    from typer.testing import CliRunner

    from t2v.cli import app

    for option in ("--max-tune-steps", "--max-tuned-models"):
        r = CliRunner().invoke(app, ["serve", option, "0"])
        assert r.exit_code == 2 and "--max-* >= 1" in r.output, r.output
    r = CliRunner().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0 and "--max-tune-steps" in r.output and "--max-tuned-models" in r.output


# ---------------------------------------------------------------- the web app
def test_the_app_has_a_tune_tab_that_tunes_and_generates(queue, client, models):
    from t2v.server.app import build_ui

    demo = build_ui(queue)
    text = json.dumps(demo.config)
    assert '"Tune"' in text and "Start from the clip's inversion" in text
    fns = {fn.api_name: fn.fn for fn in demo.fns.values()}
    # file, caption, frames, steps, lr, seed
    html, model = fns["tune"](str(models / "sources" / "clip.mp4"), CAPTION, 4, 2, 1e-3, 0)
    job = client.get(f"/v1/jobs/{model}").json()
    assert job["status"] == "succeeded" and job["source"] == "app" and job["task"] == "tune", job
    assert job["params"]["num_frames"] == 4 and job["params"]["steps"] == 2 and model in html
    upload_url = f"/v1/uploads/{job['params']['source']}/file"
    assert f'src="{upload_url}"' in html
    # tuned model, prompt, from the inversion, guidance, seed
    html = fns["tune_generate"](model, "a blue square moving right", True, 3.0, 7)
    made = client.get(f"/v1/jobs/{html.split('job ')[-1].split('<')[0].strip()}").json()
    assert made["status"] == "succeeded" and made["params"]["tuned_model"] == model and made["params"]["invert"]
    assert f'src="{upload_url}"' in html and f'src="{made["video_url"]}"' in html  # the source beside the result
    html = fns["tune_generate"](model, "a blue square moving right", False, 3.0, 7)
    assert "from noise" in html
    with pytest.raises(Exception, match="tuned_model: tune a model first"):
        fns["tune_generate"]("", "a blue square", True, 3.0, 7)
    with pytest.raises(Exception, match="prompt: prompt must be a non-empty string"):
        fns["tune"](str(models / "sources" / "clip.mp4"), "", 0, 2, 1e-3, 0)
