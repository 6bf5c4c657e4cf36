"""`POST /v1/uploads` and its companions in-process (the server's whole ASGI app, the Guard included, over a
fresh queue per test; no model is loaded): what is kept and how, what is refused (413, 415, 422, 429), the
token and host checks, and an upload's end: deleted, gone with the last job that used it, or expired."""

import json
import sqlite3
import time
import uuid

import pytest
from sources import client_for, square_video, upload, write_sources

from t2v.server.jobs import JobQueue
from t2v.server.limits import Limits
from t2v.server.tasks import check_job
from t2v.server.uploads import UploadError
from t2v.video_io import write_video


LIMIT = 150_000  # bytes: the upload limit of these tests


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_sources(tmp_path_factory.mktemp("sources"))


@pytest.fixture
def queue(tmp_path):
    q = JobQueue(tmp_path / "data", device="cpu", limits=Limits(max_upload_bytes=LIMIT, max_uploads=4))
    yield q
    q.db.close()
    q._lock_file.close()


@pytest.fixture
def client(queue):
    return client_for(queue)


def add_job(queue, upload_id, status="queued", job_id=None):
    """A job row that uses an upload, as an accepted edit job's (the worker is not running)."""
    job_id = job_id or str(uuid.uuid4())
    params = {"task": "edit", "source": upload_id, "prompt": "make it blue", "num_inference_steps": 2}
    with queue.lock:
        queue.db.execute(
            "INSERT INTO jobs (id, status, params, source, created) VALUES (?, ?, ?, 'api', ?)",
            (job_id, status, json.dumps(params), time.time()),
        )
    return job_id


def stored(queue) -> list[str]:
    return sorted(p.name for p in (queue.data_dir / "uploads").iterdir())


def detail(r) -> str:
    body = r.json()["detail"]
    return body if isinstance(body, str) else body[0]["msg"]


# ---------------------------------------------------------------- kept
@pytest.mark.parametrize("suffix", ["mp4", "webm", "gif"])
def test_a_video_is_kept_under_its_id(client, queue, files, suffix):
    r = upload(client, files / f"src.{suffix}")
    assert r.status_code == 201, r.text
    record = r.json()
    assert r.headers["location"] == f"/v1/uploads/{record['id']}"
    assert (record["kind"], record["format"], record["frames"], record["width"], record["height"]) == (
        "video",
        suffix,
        5,
        48,
        40,
    )
    assert abs(record["fps"] - 12) < 0.6 and record["jobs"] == 0 and record["expires_at"] is not None
    assert stored(queue) == [f"{record['id']}.{suffix}"]  # named by the id, never by the client
    assert client.get(f"/v1/uploads/{record['id']}").json() == record
    got = client.get(record["url"])
    assert got.status_code == 200 and got.content == (files / f"src.{suffix}").read_bytes()
    assert got.headers["content-type"] == {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}[suffix]


def test_openpose_json_is_kept(client, queue, files):
    r = upload(client, files / "pose.json")
    assert r.status_code == 201, r.text
    record = r.json()
    assert (record["kind"], record["format"], record["frames"], record["width"], record["fps"]) == (
        "pose",
        "json",
        3,
        None,
        None,
    )
    got = client.get(record["url"])
    assert got.json() == json.loads((files / "pose.json").read_text())
    assert "attachment" in got.headers["content-disposition"]


@pytest.mark.parametrize(
    "name", ["../../evil.mp4", "/etc/passwd.mp4", "..\\..\\win.mp4", "a/b/../../../c.mp4", "x" * 300 + ".mp4"]
)
def test_a_client_name_never_reaches_the_disk(client, queue, files, name, tmp_path):
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = upload(client, files / "src.mp4", name=name)
    assert r.status_code == 201, r.text
    assert stored(queue) == [f"{r.json()['id']}.mp4"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([*before, f"{r.json()['id']}.mp4"])


# ---------------------------------------------------------------- refused
def test_too_big_is_413_by_length_and_while_it_streams(client, queue):
    big = b"\x00\x00\x00\x18ftypisom" + bytes(LIMIT * 2)
    r = client.post("/v1/uploads", files={"file": ("big.mp4", big)})  # Content-Length: refused before reading
    assert r.status_code == 413 and "larger than 0.143 MB" in detail(r), r.text
    just_over = b"\x00\x00\x00\x18ftypisom" + bytes(LIMIT)  # within the body's allowance: the copy refuses it
    r = client.post("/v1/uploads", files={"file": ("big.mp4", just_over)})
    assert r.status_code == 413 and "--max-upload-mb" in detail(r), r.text
    boundary = "b0undary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'.encode()

    def chunks():  # no Content-Length (chunked): counted as it arrives
        yield head
        for _ in range(20):
            yield bytes(32 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post(
        "/v1/uploads", content=chunks(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert r.status_code == 413 and "--max-upload-mb" in detail(r), r.text
    assert stored(queue) == []


BAD_FILES = [
    ("notes.txt", b"hello", "must be a video (.mp4, .webm, .gif) or OpenPose JSON"),
    ("noext", b"hello", "must be a video"),
    ("x.mp4", b"not a video at all", "named .mp4 but is not an mp4 video"),
    ("x.mp4", b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:1.0,\nfile:///etc/passwd\n", "is not an mp4 video"),
    ("x.webm", b"GIF89a" + bytes(64), "named .webm but is not a webm video"),
    ("x.mp4", b"\x00\x00\x00\x18ftypisom" + bytes(500), "not an mp4 video t2v can read"),
    ("x.gif", b"GIF89a" + bytes(20), "not a gif video t2v can read"),
    ("x.mp4", b"", "the file is empty"),
    ("p.json", b"{not json", "not valid JSON"),
    ("p.json", b"\xff\xfe", "not valid JSON"),
    ("p.json", b"[]", "at least one frame"),
    ("p.json", b'[{"people": [{"pose_keypoints_2d": [1, 2]}]}]', "must be 54 numbers"),
    ("p.json", json.dumps([{"people": [{"pose_keypoints_2d": [0.5] * 75}]}]).encode(), "BODY_25"),
    ("p.json", b"[" * 50_000 + b"]" * 50_000, "not"),
]


@pytest.mark.parametrize("name, content, words", BAD_FILES, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_FILES)])
def test_what_t2v_cannot_use_is_422(client, queue, name, content, words):
    r = client.post("/v1/uploads", files={"file": (name, content)})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "file"] and words in detail(r), r.text
    assert str(queue.data_dir) not in r.text and len(r.content) < 800  # no server path, one short line
    assert stored(queue) == []


def test_a_bad_request_is_refused_in_one_line(client, files):
    r = client.post("/v1/uploads", content=b"x" * 100, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 415 and "multipart/form-data" in detail(r)
    r = client.post("/v1/uploads", files={"other": ("src.mp4", (files / "src.mp4").read_bytes())})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"]
    r = client.post("/v1/jobs", files={"file": ("src.mp4", b"x")})  # files go to /v1/uploads only
    assert r.status_code == 403 and "no file uploads here" in detail(r)


def test_decoding_is_bounded(client, queue, files, monkeypatch, tmp_path):
    import t2v.server.uploads as uploads

    monkeypatch.setattr(uploads, "MAX_SOURCE_FRAMES", 3)
    r = upload(client, files / "src.mp4")
    assert r.status_code == 422 and "more than 3 frames" in detail(r), r.text
    r = upload(client, files / "src.gif")
    assert r.status_code == 422 and "more than 3 frames" in detail(r), r.text
    monkeypatch.setattr(uploads, "MAX_SOURCE_FRAMES", 4096)
    monkeypatch.setattr(uploads, "MAX_DECODED_BYTES", 48 * 40 * 3 * 2)
    r = upload(client, files / "src.webm")
    assert r.status_code == 422 and "GiB decoded" in detail(r), r.text
    monkeypatch.setattr(uploads, "MAX_SOURCE_SIDE", 32)
    r = upload(client, files / "src.mp4")
    assert r.status_code == 422 and "48x40; at most 32 pixels a side" in detail(r), r.text
    assert stored(queue) == []


def test_bad_ids_are_404_and_a_bad_source_is_422(client, queue):
    for path in ("/v1/uploads/not-a-uuid", f"/v1/uploads/{uuid.uuid4()}", f"/v1/uploads/{uuid.uuid4()}/file"):
        r = client.get(path)
        assert r.status_code == 404 and "no upload" in detail(r), r.text
    assert client.delete(f"/v1/uploads/{uuid.uuid4()}").status_code == 404
    assert client.delete("/v1/uploads/..%2F..%2Fjobs.db").status_code == 404
    for source in ("nope", str(uuid.uuid4()), 5, "", "../jobs.db"):
        body = {"task": "edit", "source": source, "prompt": "make it blue"}
        with pytest.raises(Exception) as e:
            check_job(body, None, None, queue.limits, "cpu", server=queue)
        assert e.value.field == "source" and ("no upload" in str(e.value) or "id of an upload" in str(e.value))


def test_too_many_waiting_uploads_is_429(client, queue, files):
    ids = [upload(client, files / "pose.json").json()["id"] for _ in range(4)]
    r = upload(client, files / "pose.json")
    assert r.status_code == 429 and "4 uploads are waiting for a job" in detail(r), r.text
    add_job(queue, ids[0])  # one is used: room for one more
    assert upload(client, files / "pose.json").status_code == 201


# ---------------------------------------------------------------- who may
def test_the_token_and_the_host_are_checked(queue, files):
    client = client_for(queue, token="s3cret")
    assert upload(client, files / "src.gif").status_code == 401
    auth = {"Authorization": "Bearer s3cret"}
    r = upload(client, files / "src.gif", headers=auth)
    assert r.status_code == 201, r.text
    record = r.json()
    for method, path in (("get", f"/v1/uploads/{record['id']}"), ("get", record["url"])):
        assert getattr(client, method)(path).status_code == 401
        assert getattr(client, method)(path, headers=auth).status_code == 200
    assert client.delete(f"/v1/uploads/{record['id']}").status_code == 401
    r = upload(client, files / "src.gif", headers={**auth, "Host": "attacker.example"})
    assert r.status_code == 400 and "does not answer to the host" in detail(r)
    r = upload(client, files / "src.gif", headers={**auth, "Origin": "http://attacker.example"})
    assert r.status_code == 403 and "cross-origin" in detail(r)
    assert client.delete(f"/v1/uploads/{record['id']}", headers=auth).status_code == 204
    assert stored(queue) == []


# ---------------------------------------------------------------- an upload's end
def test_delete(client, queue, files):
    record = upload(client, files / "src.mp4").json()
    job = add_job(queue, record["id"])
    r = client.delete(f"/v1/uploads/{record['id']}")
    assert r.status_code == 409 and f"the source of job {job}, which is queued" in detail(r), r.text
    with queue.lock:
        queue.db.execute("UPDATE jobs SET status='succeeded' WHERE id=?", (job,))
    assert client.get(f"/v1/uploads/{record['id']}").json()["jobs"] == 1
    assert client.delete(f"/v1/uploads/{record['id']}").status_code == 204  # a finished job keeps its results
    assert client.get(f"/v1/uploads/{record['id']}").status_code == 404
    assert client.get(record["url"]).status_code == 404 and stored(queue) == []


def test_an_upload_goes_with_the_last_job_that_used_it(client, queue, files):
    record = upload(client, files / "src.webm").json()
    first, second = add_job(queue, record["id"], "succeeded"), add_job(queue, record["id"], "failed")
    assert client.get(f"/v1/uploads/{record['id']}").json()["jobs"] == 2
    assert client.delete(f"/v1/jobs/{first}", params={"purge": "true"}).status_code == 204
    assert client.get(f"/v1/uploads/{record['id']}").json()["jobs"] == 1
    assert client.delete(f"/v1/jobs/{second}", params={"purge": "true"}).status_code == 204
    assert client.get(f"/v1/uploads/{record['id']}").status_code == 404 and stored(queue) == []
    other = upload(client, files / "pose.json").json()
    assert client.delete(f"/v1/jobs/{add_job(queue, 'not-an-upload')}", params={"purge": "true"}).status_code == 204
    assert client.get(f"/v1/uploads/{other['id']}").status_code == 200  # another job's going takes nothing else


def test_unused_uploads_expire(client, queue, files):
    unused, used = (upload(client, files / "pose.json").json() for _ in range(2))
    add_job(queue, used["id"], "succeeded")
    assert queue.uploads.sweep() == 0
    assert queue.uploads.sweep(now=time.time() + queue.limits.upload_ttl + 1) == 1
    assert client.get(f"/v1/uploads/{unused['id']}").status_code == 404
    assert client.get(f"/v1/uploads/{used['id']}").json()["expires_at"] is None
    assert stored(queue) == [f"{used['id']}.json"]


def test_start_up_removes_half_written_and_unrecorded_files(tmp_path, files):
    data = tmp_path / "data"
    q = JobQueue(data, device="cpu")
    kept = q.uploads.add_path(files / "src.gif")
    q.db.close()
    q._lock_file.close()
    folder = data / "uploads"
    (folder / f".{uuid.uuid4()}.tmp.mp4").write_bytes(b"half")
    (folder / f"{uuid.uuid4()}.mp4").write_bytes(b"no row")
    q = JobQueue(data, device="cpu")
    try:
        assert sorted(p.name for p in folder.iterdir()) == [f"{kept['id']}.gif"]
        assert q.uploads.get(kept["id"])["frames"] == 5
        with pytest.raises(UploadError, match="must be a video") as e:
            q.uploads.add_path(files / "pose.json", name="pose.txt")
        assert e.value.status == 422
    finally:
        q.db.close()
        q._lock_file.close()
    db = sqlite3.connect(data / "jobs.db")
    assert db.execute("SELECT COUNT(*) FROM uploads").fetchone()[0] == 1
    db.close()


def test_a_video_of_odd_size_is_read_as_t2v_reads_it(client, tmp_path):
    with pytest.warns(UserWarning, match="padded frames"):
        write_video(tmp_path / "odd.mp4", square_video(height=33, width=47), fps=8)
    r = upload(client, tmp_path / "odd.mp4")
    assert r.status_code == 201 and r.json()["frames"] == 5, r.text
    assert (r.json()["width"], r.json()["height"]) == (48, 34)  # as t2v writes it: padded to even
