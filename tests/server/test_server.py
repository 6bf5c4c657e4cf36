"""The job server end to end: a real `t2v serve` process on loopback with a tiny model, driven by httpx.

Submit, poll, download, cancel, 422s, 413, 429, the API token, the web app's jobs in the same queue,
8 concurrent clients, and kill -9 / SIGTERM with queued and running jobs (none lost).
"""

import signal
import sqlite3
import threading
import time

import httpx
import pytest
from server_process import Server

from t2v.video_io import read_video


FAST = {"num_frames": 3, "num_inference_steps": 2, "height": 32, "width": 32}
LONG = {"num_frames": 4, "num_inference_steps": 1000, "height": 32, "width": 32}  # runs until cancelled or killed
PROMPT = "a red circle moving right"


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("srv") / "data", tiny_model)
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
def test_submit_poll_download(client, tmp_path):
    r = client.post("/v1/jobs", json=dict(prompt=PROMPT, seed=7, fps=4, **FAST))
    job = r.json()
    assert r.status_code == 202 and r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and len(job["id"]) == 36 and job["seed"] == 7
    done = client.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()  # a long poll: returns when the job ends
    assert done["status"] == "succeeded", done
    assert done["progress"] == 1 and done["step"] == done["total_steps"] == 2 and done["error"] is None
    assert done["source"] == "api" and done["result"]["num_frames"] == 3
    r = client.get(done["video_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    (tmp_path / "v.mp4").write_bytes(r.content)
    frames, fps = read_video(tmp_path / "v.mp4")
    assert frames.shape == (3, 32, 32, 3) and fps == 4
    for fmt, media in (("gif", "image/gif"), ("webm", "video/webm")):
        r = client.get(done["video_url"], params={"format": fmt, "download": 1})
        assert (
            r.status_code == 200
            and r.headers["content-type"] == media
            and "attachment" in r.headers["content-disposition"]
        )
        (tmp_path / f"v.{fmt}").write_bytes(r.content)
        assert read_video(tmp_path / f"v.{fmt}")[0].shape[0] == 3
    assert client.get(done["video_url"], params={"format": "avi"}).status_code == 422


def test_seed_is_drawn_reported_and_reproduces(client):
    a = wait(client, submit(client, prompt=PROMPT, **FAST)["id"])
    assert isinstance(a["seed"], int)
    b = wait(client, submit(client, prompt=PROMPT, seed=a["seed"], **FAST)["id"])
    c = wait(client, submit(client, prompt=PROMPT, seed=a["seed"] + 1, **FAST)["id"])
    video = lambda job: client.get(job["video_url"]).content  # noqa: E731
    assert video(a) == video(b) != video(c)


def test_regions_job(client):
    two = dict(prompt="a red box and a blue ball", seed=3, **FAST)
    jobs = [
        wait(client, submit(client, **two, **extra)["id"]) for extra in ({}, {"regions": True}, {"regions": False})
    ]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3, jobs
    video = lambda job: client.get(job["video_url"]).content  # noqa: E731
    assert (
        video(jobs[0]) == video(jobs[1]) != video(jobs[2])
    )  # the model's default: regions, where a prompt has two objects


def test_storyboard_job(client):
    board = (
        "fps: 5\ntransition_frames: 2\nscenes:\n  - {prompt: a red circle, frames: 3}\n"
        "  - {prompt: a blue square, frames: 3}\n"
    )
    done = wait(client, submit(client, storyboard=board, num_inference_steps=2, height=32, width=32, seed=1)["id"])
    assert done["status"] == "succeeded", done
    assert done["result"]["num_frames"] == 6 and done["result"]["fps"] == 5


BAD = [
    ({"height": 33}, "height", "multiple of 2"),
    ({"num_frames": 0}, "num_frames", "num_frames must be an integer in [1, "),
    ({"num_frames": 257}, "num_frames", "at most 256 on this server"),
    ({"num_inference_steps": 0}, "num_inference_steps", ">= 1"),
    ({"num_inference_steps": 1001}, "num_inference_steps", "at most 1000"),
    ({"width": 2048}, "width", "at most 1024"),
    ({"scheduler": "magic"}, "scheduler", "unknown scheduler 'magic'"),
    ({"fps": 0}, "fps", "fps must be"),
    ({"seed": -1}, "seed", "seed must be an integer in [0, 2**63)"),
    ({"prompt": "  "}, "prompt", "prompt must be a non-empty string"),
    ({"prompt": "x" * 1001}, "prompt", "at most 1000"),
    ({"prompt": None}, "prompt", "a prompt (or a storyboard) is required"),
    ({"storyboard": "scenes: [{prompt: a, frames: 2}]"}, "storyboard", "not both"),
    ({"num_frames": "many"}, "num_frames", "valid integer"),
    ({"frames": 3}, "frames", "Extra inputs are not permitted"),
    ({"regions": True}, "regions", "two objects"),  # the prompt names one
    ({"prompt": "a red box and a blue ball", "regions": True, "num_frames": 20}, "regions", "one pass"),
]


@pytest.mark.parametrize("change, field, reason", BAD, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD)])
def test_invalid_parameters_422(client, change, field, reason):
    body = {"prompt": PROMPT, **FAST, **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", field] and reason in detail["msg"], detail


@pytest.mark.parametrize(
    "board, reason",
    [
        ("scenes: [oops", "not valid YAML"),
        ("scenes: [{prompt: a}]", "scene 1: missing 'frames'"),
        ("scenes: [{prompt: a, frames: 300}]", "at most 256 on this server"),
        ({"scenes": [{"prompt": "a", "frames": 2}], "speed": 3}, "unknown storyboard keys: speed"),
    ],
)
def test_invalid_storyboard_422(client, board, reason):
    r = client.post("/v1/jobs", json={"storyboard": board, "num_inference_steps": 2})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "storyboard"], r.text
    assert reason in r.json()["detail"][0]["msg"]
    r = client.post("/v1/jobs", json={"storyboard": "scenes: [{prompt: a, frames: 2}]", "num_frames": 4})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "num_frames"]


def test_nan_guidance_and_body_limits(client):
    r = client.post(
        "/v1/jobs", content=b'{"prompt": "a", "guidance_scale": NaN}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "guidance_scale"], r.text
    r = client.post("/v1/jobs", json={"prompt": "a", "negative_prompt": "x" * 70_000})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    r = client.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_unknown_jobs_and_paths(client):
    assert client.get("/v1/jobs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get("/v1/jobs/..%2F..%2Fetc%2Fpasswd/video").status_code == 404
    assert client.get("/v1/jobs/not-a-uuid/video").status_code == 404
    assert client.delete("/v1/jobs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert client.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN: off (see docs/server.md)


def test_list_is_paginated(client):
    ids = [submit(client, prompt=PROMPT, **FAST)["id"] for _ in range(3)]
    for i in ids:
        wait(client, i)
    page = client.get("/v1/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2] and page["next_offset"] == 2 and page["total"] >= 3
    page2 = client.get("/v1/jobs", params={"limit": 2, "offset": 2}).json()
    assert page2["jobs"][0]["id"] == ids[0]
    succeeded = client.get("/v1/jobs", params={"status": "succeeded", "limit": 200}).json()
    assert all(j["status"] == "succeeded" for j in succeeded["jobs"]) and set(ids) <= {
        j["id"] for j in succeeded["jobs"]
    }
    assert client.get("/v1/jobs", params={"limit": 0}).status_code == 422
    assert client.get("/v1/jobs", params={"status": "lost"}).status_code == 422


def test_cancel_queued_and_running(client):
    running = submit(client, prompt=PROMPT, **LONG)
    queued = submit(client, prompt=PROMPT, **FAST)
    wait(client, running["id"], ("running",), until=lambda j: j["step"] >= 2)
    r = client.delete(f"/v1/jobs/{queued['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = client.delete(f"/v1/jobs/{running['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # the worker stops the running job within one denoising step and takes the next job
    after = wait(client, submit(client, prompt=PROMPT, **FAST)["id"], timeout=30)
    assert after["status"] == "succeeded"
    job = client.get(f"/v1/jobs/{running['id']}").json()
    assert job["status"] == "cancelled" and job["video_url"] is None
    assert job["result"]["stopped_at_step"] - job["result"]["cancelled_at_step"] <= 2, job["result"]
    assert client.get(f"/v1/jobs/{running['id']}/video").status_code == 409
    assert client.get(f"/v1/jobs/{queued['id']}").json()["status"] == "cancelled"
    assert client.delete(f"/v1/jobs/{after['id']}").status_code == 409  # finished: nothing to cancel


def test_eight_concurrent_clients(server):
    results, errors = {}, []

    def one(i):
        try:
            with httpx.Client(base_url=server.url, timeout=60) as c:
                job = submit(c, prompt=f"a red circle moving right {i}", seed=i, **FAST)
                done = c.get(f"/v1/jobs/{job['id']}", params={"wait": 60}, timeout=90).json()
                done = wait(c, job["id"], timeout=120)  # (in case the long poll ended first)
                video = c.get(done["video_url"])
                results[i] = (done["status"], video.status_code, len(video.content), job["id"])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors and len(results) == 8, errors
    assert all(s == "succeeded" and code == 200 and n > 0 for s, code, n, _ in results.values()), results
    assert len({r[3] for r in results.values()}) == 8


def test_web_app_submits_to_the_same_queue(server, client):
    from gradio_client import Client

    app = Client(server.url + "/", verbose=False, download_files=False)
    html = app.predict(PROMPT, "", 3, 32, 32, 2, 7.5, 3, 8, api_name="/text_to_video")
    job_id = html.split("job ")[-1].split("<")[0].strip()
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["source"] == "app" and job["seed"] == 3
    assert (
        job["params"]["guidance_scale"] == 7.5 and f'src="/v1/jobs/{job_id}/video"' in html and "?download=1" in html
    )
    assert job_id in [j["id"] for j in client.get("/v1/jobs").json()["jobs"]]
    assert job["params"]["regions"] is False  # one object: no regions, whatever the checkbox
    for prompt, regions in (("a red box and a blue ball", True), (PROMPT, False)):  # checked: where they apply
        html = app.predict(prompt, "", 3, 32, 32, 2, 7.5, 3, 8, True, api_name="/text_to_video")
        job = client.get(f"/v1/jobs/{html.split('job ')[-1].split('<')[0].strip()}").json()
        assert job["status"] == "succeeded" and job["params"]["regions"] is regions, job
    board = "scenes:\n  - {prompt: a red circle, frames: 2}\n  - {prompt: a blue square, frames: 2}\n"
    html = app.predict(board, "", 32, 32, 2, 9.0, -1, 0, api_name="/storyboard")  # fps 0: the storyboard's
    job = client.get(f"/v1/jobs/{html.split('job ')[-1].split('<')[0].strip()}").json()
    assert (
        job["status"] == "succeeded"
        and job["source"] == "app"
        and job["result"]["num_frames"] == 4
        and job["params"]["fps"] == 8
    )
    with pytest.raises(Exception, match="height"):  # the API's checks, shown in the page
        app.predict(PROMPT, "", 3, 33, 32, 2, 9.0, 1, 8, api_name="/text_to_video")
    page = client.get("/")
    assert page.status_code == 200 and "gradio" in page.text.lower()


# ---------------------------------------------------------------- token and queue limit
@pytest.fixture(scope="module")
def guarded(tiny_model, tmp_path_factory):
    srv = Server(
        tmp_path_factory.mktemp("guarded") / "data",
        tiny_model,
        "--max-queue",
        "2",
        "--allowed-host",
        "t2v.example",
        env={"T2V_API_TOKEN": "s3cret"},
    )
    try:
        yield srv.start()
    finally:
        srv.kill()


def test_token_required_everywhere(guarded):
    with httpx.Client(base_url=guarded.url, timeout=30) as anon:
        for path in (
            "/healthz",
            "/readyz",
            "/v1/jobs",
            "/docs",
            "/openapi.json",
            "/",
            "/v1/jobs/00000000-0000-0000-0000-000000000000/video",
        ):
            r = anon.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert anon.post("/v1/jobs", json={"prompt": PROMPT, **FAST}).status_code == 401
        assert anon.get("/v1/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = anon.get("/", params={"token": "s3cret"})  # a browser: the token once in the address, then a cookie
        assert (
            r.status_code == 200
            and "t2v_token=s3cret" in r.headers["set-cookie"]
            and "HttpOnly" in r.headers["set-cookie"]
        )
        assert anon.get("/v1/jobs").status_code == 200  # the cookie jar now has it
        assert anon.get("/v1/jobs", headers={"Host": "t2v.example"}).status_code == 200  # --allowed-host
        assert anon.get("/v1/jobs", headers={"Host": "other.example"}).status_code == 400
    assert "s3cret" not in guarded.log_text() and "token=***" in guarded.log_text()  # never in the access log
    with httpx.Client(base_url=guarded.url, timeout=30, headers={"Authorization": "Bearer s3cret"}) as c:
        done = wait(c, submit(c, prompt=PROMPT, **FAST)["id"])
        assert done["status"] == "succeeded" and c.get(done["video_url"]).status_code == 200


def test_full_queue_429(guarded):
    with httpx.Client(base_url=guarded.url, timeout=30, headers={"Authorization": "Bearer s3cret"}) as c:
        running = submit(c, prompt=PROMPT, **LONG)
        wait(c, running["id"], ("running",))
        queued = [submit(c, prompt=PROMPT, **FAST) for _ in range(2)]
        r = c.post("/v1/jobs", json={"prompt": PROMPT, **FAST})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
        for job in (running, *queued):
            assert c.delete(f"/v1/jobs/{job['id']}").status_code == 200
        assert wait(c, submit(c, prompt=PROMPT, **FAST)["id"], timeout=30)["status"] == "succeeded"


# ---------------------------------------------------------------- crashes and stops
@pytest.mark.slow
def test_kill_9_and_sigterm_lose_no_job(tiny_model, tmp_path):
    srv = Server(tmp_path / "data", tiny_model)
    try:
        srv.start()
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            done = wait(c, submit(c, prompt=PROMPT, seed=1, **FAST)["id"])
            video = c.get(done["video_url"]).content
            running = submit(c, prompt=PROMPT, seed=2, **dict(LONG, num_inference_steps=40))
            queued = submit(c, prompt=PROMPT, seed=3, **FAST)
            wait(c, running["id"], ("running",), until=lambda j: j["step"] >= 2)
        srv.kill(signal.SIGKILL)

        srv.start()  # same data directory, same port
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.get(done["video_url"]).content == video  # finished: still served
            again = wait(c, running["id"], timeout=120)  # interrupted: ran again
            assert again["status"] == "succeeded" and again["attempts"] == 2 and again["seed"] == 2, again
            assert wait(c, queued["id"], timeout=60)["status"] == "succeeded"  # queued: ran
            assert c.get(again["video_url"]).status_code == 200
            stopped = submit(c, prompt=PROMPT, **LONG)
            wait(c, stopped["id"], ("running",), until=lambda j: j["step"] >= 1)
            waiting = submit(c, prompt=PROMPT, **FAST)
        t0 = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(15)
        assert time.time() - t0 < 10, srv.log_tail()
        rows = dict(sqlite3.connect(srv.data_dir / "jobs.db").execute("SELECT id, status FROM jobs").fetchall())
        assert (
            rows[stopped["id"]] == "queued" and rows[waiting["id"]] == "queued"
        )  # persisted, to run after the restart
        assert not list((srv.data_dir / "videos").glob(".*tmp*"))
    finally:
        srv.kill()
