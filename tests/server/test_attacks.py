"""Attacks replayed against one real `t2v serve` on 127.0.0.1 (issue 23), bounded in count and time.

Each bad request must get a 4xx with a short one-line message (never a 500, never a long reply, well
under a second), and the server must go on serving: listing works after each. Then the lock-out
(300 half-open connections), DNS rebinding (Host), cross-site requests (Origin), uploads, a stored row
that cannot be shown, and the page's security headers. All traffic goes to 127.0.0.1 only.
"""

import json
import socket
import sqlite3
import threading
import time
import uuid

import httpx
import pytest
from server_process import Server


MAX_REPLY = 2048  # bytes: a short message (the bound is 64 KB; these are all much shorter)
MAX_SECONDS = 1.0
PROMPT = "a red circle moving right"
FAST = {"num_frames": 3, "num_inference_steps": 2, "height": 32, "width": 32}
LONG = {"num_frames": 4, "num_inference_steps": 1000, "height": 32, "width": 32}
SCENE = "scenes: [{prompt: a, frames: 2}]\n"
HEADER_TIMEOUT = 2  # seconds (the server's --header-timeout here; 10 by default)


def laughs(depth: int) -> str:
    """A "billion laughs" under fps: 9 ** (depth + 1) values from about 50 * depth bytes of YAML."""
    parts = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return f"fps: [{', '.join(parts)}]\n{SCENE}"


def raw(text: str) -> bytes:
    return text.encode()


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("attacks") / "data", tiny_model, "--header-timeout", str(HEADER_TIMEOUT))
    try:
        yield srv.start()
    finally:
        srv.kill()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def assert_short_refusal(r: httpx.Response, status: int, words: str = ""):
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert len(r.content) <= MAX_REPLY, f"{len(r.content)} bytes: {r.text[:300]}"
    assert r.elapsed.total_seconds() < MAX_SECONDS, r.elapsed
    body = r.json()
    detail = body["detail"] if isinstance(body["detail"], str) else body["detail"][0]["msg"]
    assert "\n" not in detail and words in detail, detail


def assert_still_serves(client):
    r = client.get("/v1/jobs", params={"limit": 200})
    assert r.status_code == 200 and r.json()["total"] >= 0, r.text[:300]
    assert client.get("/healthz").json() == {"status": "ok"}


# (name, request keywords for client.post("/v1/jobs", ...), status, words of the message)
BAD_SUBMISSIONS = [
    ("billion-laughs-8", {"json": {"storyboard": laughs(8)}}, 422, "more than 10000 values"),
    ("laughs-3-excerpt", {"json": {"storyboard": laughs(3)}}, 422, "'fps' must be a number, got [["),
    ("deep-yaml", {"json": {"storyboard": "[" * 60_000}}, 422, "nest"),
    ("recursive-alias", {"json": {"storyboard": f"fps: &a [*a]\n{SCENE}"}}, 422, "alias inside"),
    ("surrogate-prompt", {"content": raw('{"prompt": "a \\ud800 b"}')}, 422, "lone surrogate"),
    ("surrogate-negative", {"content": raw('{"prompt": "a", "negative_prompt": "\\udc00"}')}, 422, "lone surrogate"),
    ("surrogate-scene", {"content": raw('{"storyboard": {"scenes": [{"prompt": "\\udfff", "frames": 2}]}}')}, 422, ""),
    ("nul-prompt", {"json": {"prompt": "a\x00b", **FAST}}, 422, "control character"),
    ("mixed-keys", {"json": {"storyboard": f"{SCENE}1: 2\nnull: 3\n"}}, 422, "unknown storyboard keys: 1, None"),
    ("scene-keys", {"json": {"storyboard": "scenes: [{prompt: a, frames: 2, null: 1, 3: 4}]"}}, 422, "unknown keys"),
    ("fps-400-digits", {"json": {"storyboard": f"fps: {'9' * 400}\n{SCENE}"}}, 422, "integer of 400 digits"),
    ("fps-5000-digits", {"json": {"storyboard": f"fps: {'9' * 5000}\n{SCENE}"}}, 422, "more digits"),
    ("fps-400-digits-json", {"content": raw('{"prompt": "a", "fps": ' + "9" * 400 + "}")}, 422, "valid number"),
    ("frames-400-digits", {"content": raw('{"prompt": "a", "num_frames": 1' + "0" * 400 + "}")}, 422, "401 digits"),
    ("seed-5000-digits", {"content": raw('{"prompt": "a", "seed": ' + "9" * 5000 + "}")}, 400, ""),
    ("guidance-1e308", {"json": {"prompt": "a", "guidance_scale": 1e308}}, 422, "guidance_scale must be in [0, 100]"),
    ("guidance-infinity", {"content": raw('{"prompt": "a", "guidance_scale": Infinity}')}, 422, "finite"),
    (
        "storyboard-negative-5000",
        {"json": {"storyboard": {"negative_prompt": "x" * 5000, "scenes": [{"prompt": "a", "frames": 2}]}}},
        422,
        "negative_prompt is longer than 1000",
    ),
    (
        "transition-10e300",
        {"json": {"storyboard": {"transition_frames": 10**300, "scenes": [{"prompt": "a", "frames": 2}] * 2}}},
        422,
        "at most 4096",
    ),
    (
        "weeks-of-cpu",
        {"json": {"prompt": "a", "num_frames": 256, "height": 1024, "width": 1024, "num_inference_steps": 1000}},
        422,
        "megapixel-steps",
    ),
    ("malformed-json", {"content": b'{"prompt": '}, 422, "JSON decode error"),
    ("not-utf8", {"content": b'{"prompt": "\xff\xfe"}'}, 400, ""),
    ("deep-json", {"content": b'{"prompt": "a", "storyboard": ' + b"[" * 5000 + b"]" * 5000 + b"}"}, 400, ""),
    ("echo-of-a-list", {"json": {"prompt": ["x" * 1000] * 50}}, 422, "valid string"),
    ("echo-of-a-key", {"json": {"prompt": "a", "k" * 20_000: 1}}, 422, "Extra inputs"),
    ("huge-body", {"json": {"prompt": "a", "negative_prompt": "x" * 70_000}}, 413, "larger than"),
]


@pytest.mark.parametrize(
    "kwargs, status, words", [b[1:] for b in BAD_SUBMISSIONS], ids=[b[0] for b in BAD_SUBMISSIONS]
)
def test_bad_submission_gets_a_short_4xx(client, kwargs, status, words):
    headers = {"content-type": "application/json"} if "content" in kwargs else None
    assert_short_refusal(client.post("/v1/jobs", headers=headers, **kwargs), status, words)
    assert_still_serves(client)


BAD_READS = [
    ("offset-past-2**63", "/v1/jobs", {"offset": 2**63}, 422),
    ("limit-10**30", "/v1/jobs", {"limit": 10**30}, 422),
    ("status-junk", "/v1/jobs", {"status": "\x00" * 100}, 422),
    ("long-job-id", "/v1/jobs/" + "x" * 8000, None, 404),
    ("traversal", "/v1/jobs/..%2F..%2Fetc%2Fpasswd/video", None, 404),
    ("wait-forever", f"/v1/jobs/{uuid.UUID(int=0)}", {"wait": 1e300}, 422),
    ("bad-format", f"/v1/jobs/{uuid.UUID(int=0)}/video", {"format": "../../etc/passwd"}, 422),
]


@pytest.mark.parametrize("path, params, status", [b[1:] for b in BAD_READS], ids=[b[0] for b in BAD_READS])
def test_bad_read_gets_a_short_4xx(client, path, params, status):
    assert_short_refusal(client.get(path, params=params), status)
    assert_still_serves(client)


def test_files_outside_the_data_dir_are_not_served(client):
    for path in (
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=../../../../etc/passwd",
        "/static/../../etc/passwd",
    ):
        r = client.get(path)
        assert r.status_code in (403, 404) and b"root:" not in r.content, (path, r.status_code)
    assert_still_serves(client)


def test_huge_headers_are_refused(server, client):
    r = client.get("/healthz", headers={"x-big": "a" * 20_000})
    assert r.status_code in (400, 431) and len(r.content) < MAX_REPLY
    assert_still_serves(client)


def test_host_header_allow_list(server, client):
    """DNS rebinding: a page on attacker.example (now pointing at 127.0.0.1) gets nothing, not even /healthz."""
    evil = {"Host": "attacker.example"}
    for method, path in (
        ("GET", "/healthz"),
        ("GET", "/v1/jobs"),
        ("GET", "/"),
        ("DELETE", f"/v1/jobs/{uuid.uuid4()}"),
    ):
        assert_short_refusal(client.request(method, path, headers=evil), 400, "does not answer to the host")
    r = client.post("/v1/jobs", json={"prompt": PROMPT, **FAST}, headers={"Host": f"attacker.example:{server.port}"})
    assert_short_refusal(r, 400, "attacker.example")
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", f"[::1]:{server.port}", "localhost"):
        assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
    assert_still_serves(client)


def test_cross_origin_changes_are_refused(server, client):
    job = client.post("/v1/jobs", json={"prompt": PROMPT, **LONG}).json()  # no Origin: not a browser, allowed
    for origin in ("http://attacker.example", "null", f"http://localhost.attacker.example:{server.port}"):
        r = client.post("/v1/jobs", json={"prompt": PROMPT, **FAST}, headers={"Origin": origin})
        assert_short_refusal(r, 403, "cross-origin")
        assert_short_refusal(client.delete(f"/v1/jobs/{job['id']}", headers={"Origin": origin}), 403, "cross-origin")
    assert client.get("/v1/jobs", headers={"Origin": "http://attacker.example"}).status_code == 200  # a read
    same = {"Origin": server.url}  # the web app's own page
    assert client.delete(f"/v1/jobs/{job['id']}", headers=same).json()["status"] == "cancelled"
    assert_still_serves(client)


def test_uploads_only_where_files_are_taken(server, client):
    files = {"files": ("x.mp4", b"\x00" * 1000, "video/mp4")}
    for path in ("/v1/jobs", "/v1/jobs?upload_id=1", "/gradio_api/queue/join", "/x/gradio_api/upload"):
        assert_short_refusal(client.post(path, files=files), 403, "no file uploads")
    for path in ("/gradio_api/upload", "/v1/uploads"):  # where files are taken: multipart only
        r = client.post(path, content=b"x" * 100, headers={"content-type": "application/octet-stream"})
        assert_short_refusal(r, 415, "multipart/form-data")
    r = client.post("/v1/uploads", files={"file": ("../../x.mp4", b"\x00" * 1000, "video/mp4")})
    assert_short_refusal(r, 422, "is not an mp4 video")  # checked, and nothing kept
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:  # says 1 TB is coming
        s.sendall(
            b"POST /v1/uploads HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 1000000000000\r\n\r\n--x\r\n"
        )
        reply = b""
        while b"}" not in reply and len(reply) < 8192 and (chunk := s.recv(4096)):
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and "--max-upload-mb" in reply, reply
    assert not any((server.data_dir / "uploads").iterdir())
    kept = (
        [p for p in (server.data_dir / "gradio").rglob("*") if p.is_file()]
        if (server.data_dir / "gradio").exists()
        else []
    )
    assert not kept, kept
    assert_still_serves(client)


def test_security_headers_and_no_cdn_docs(client):
    for path in ("/", "/v1/jobs", "/openapi.json"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff", path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"] and r.headers["referrer-policy"]
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404


def test_a_row_that_cannot_be_shown_does_not_break_listing(server, client):
    """Rows as an older server stored them (a lone surrogate, NaN, broken JSON): listed, shown, purged."""
    ids = [str(uuid.uuid4()) for _ in range(3)]
    rows = [
        (
            ids[0],
            "failed",
            json.dumps({"prompt": "a \ud800 b", "seed": 1, "num_inference_steps": 2}),
            None,
            "Type\udc00",
        ),
        (ids[1], "succeeded", "not json", "{", None),
        (ids[2], "queued", json.dumps({"prompt": "x", "guidance_scale": float("nan")}), None, None),
    ]
    db = sqlite3.connect(server.data_dir / "jobs.db", timeout=10)
    try:
        for job_id, status, params, result, error in rows:
            db.execute(
                "INSERT INTO jobs (id, status, params, source, created, result, error) "
                "VALUES (?, ?, ?, 'api', ?, ?, ?)",
                (
                    job_id,
                    status,
                    params,
                    time.time(),
                    result,
                    error.encode("utf-8", "surrogatepass") if error else None,
                ),
            )
        db.commit()
    finally:
        db.close()
    assert_still_serves(client)
    listed = {j["id"]: j for j in client.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
    assert set(ids) <= set(listed) and "\\ud800" in listed[ids[0]]["params"]["prompt"]
    for job_id in ids:
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200
        r = client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
        assert r.status_code == 204, r.text
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert client.delete(f"/v1/jobs/{ids[0]}", params={"purge": "true"}).status_code == 404
    assert_still_serves(client)


def test_purge_removes_a_finished_job_and_its_files(server, client):
    job = client.post("/v1/jobs", json={"prompt": PROMPT, **FAST}).json()
    done = client.get(f"/v1/jobs/{job['id']}", params={"wait": 30}).json()
    assert done["status"] == "succeeded", done
    assert client.get(done["video_url"], params={"format": "gif"}).status_code == 200
    assert len(list((server.data_dir / "videos").glob(f"{job['id']}.*"))) == 2  # the mp4 and the gif
    assert client.delete(f"/v1/jobs/{job['id']}", params={"purge": 1}).status_code == 204
    assert not list((server.data_dir / "videos").glob(f"{job['id']}.*"))
    assert client.get(done["video_url"]).status_code == 404


def test_half_open_connections_do_not_lock_others_out(server, client):
    """300 connections that never finish their headers (half send nothing, half trickle): /healthz still
    answers at once, and the server closes every one of them within its header timeout."""
    socks = []
    try:
        for i in range(300):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 2:
                s.sendall(b"GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            socks.append(s)
        t0 = time.monotonic()
        with httpx.Client(base_url=server.url, timeout=5) as fresh:
            assert fresh.get("/healthz").status_code == 200
            assert fresh.get("/v1/jobs").status_code == 200
        answered = time.monotonic() - t0
        assert answered < 3, answered
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=5)  # slowloris: a byte every 0.25 s
        socks.append(slow)
        t0, closed = time.monotonic(), False
        for byte in b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.25)
            if time.monotonic() - t0 > HEADER_TIMEOUT + 3:
                break
        deadline = time.monotonic() + HEADER_TIMEOUT + 3
        open_ones = [s for s in socks if not _closed_by_server(s, deadline)]
        assert not open_ones and (closed or _closed_by_server(slow, deadline)), f"{len(open_ones)} still open"
    finally:
        for s in socks:
            s.close()
    assert_still_serves(client)


def test_a_body_that_never_arrives_gets_408(server, client):
    with socket.create_connection(("127.0.0.1", server.port), timeout=HEADER_TIMEOUT + 5) as s:
        s.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"prompt": '
        )
        t0, reply = time.monotonic(), b""
        while chunk := s.recv(4096):
            reply += chunk
        waited = time.monotonic() - t0
    assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 2 s" in reply, reply[:300]
    assert HEADER_TIMEOUT - 0.5 < waited < HEADER_TIMEOUT + 2, waited
    assert_still_serves(client)


def _closed_by_server(s: socket.socket, deadline: float) -> bool:
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        while s.recv(4096):  # (a 503 for a client past its limit, then the end)
            pass
        return True
    except ConnectionResetError:
        return True
    except (TimeoutError, OSError):
        return False


def test_a_client_whose_connections_are_all_busy_gets_503(server, client):
    """32 long polls in progress from 127.0.0.1 (the limit per address): a 33rd connection is answered 503
    at once (none of the 32 is idle, so none makes room), and the 32 are not disturbed."""
    running = client.post("/v1/jobs", json={"prompt": PROMPT, **LONG}).json()
    codes = []

    def long_poll():
        with httpx.Client(base_url=server.url, timeout=10) as c:
            codes.append(c.get(f"/v1/jobs/{running['id']}", params={"wait": 3}).status_code)

    threads = [threading.Thread(target=long_poll) for _ in range(32)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # all 32 requests sent and waiting
    with httpx.Client(base_url=server.url, timeout=5) as extra:
        r = extra.get("/healthz")
    assert r.status_code == 503 and "too many connections" in r.text and r.elapsed.total_seconds() < MAX_SECONDS
    for t in threads:
        t.join(15)
    assert codes == [200] * 32, codes
    assert client.delete(f"/v1/jobs/{running['id']}").status_code == 200
    assert_still_serves(client)


def test_the_log_has_no_traceback_and_no_500(server):
    """Last: nothing above made the server fail inside (an unhandled exception is logged with a traceback)."""
    log = server.log_text()
    assert "Traceback" not in log and '" 500 ' not in log and "Exception in ASGI application" not in log, log[-3000:]
