"""The job server's cost: API overhead per job against calling the pipeline directly, and jobs per minute.

    python benchmarks/bench_server.py                          # the embedded model, its defaults
    python benchmarks/bench_server.py --model DIR --height 32 --width 32 --runs 5

Starts `t2v serve` on a free loopback port with a fresh data directory, then alternates, `--runs`
times: one job in this process (the pipeline call, and `run_generate` = the pipeline plus writing the
mp4, what `t2v generate` does) and the same job through the API (POST, then a long poll `GET
/v1/jobs/{id}?wait=60` until it has succeeded), never both at once. Prints the medians and the
overhead (target <= 5%). Then submits `--burst` jobs at once and reports jobs per minute until the
last one has finished.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


PROMPT = "a red circle moving right on a black background"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_job(client: httpx.Client, params: dict) -> float:
    start = time.perf_counter()
    job = client.post("/v1/jobs", json=params).raise_for_status().json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        job = client.get(f"/v1/jobs/{job['id']}", params={"wait": 60}).json()  # a long poll
    assert job["status"] == "succeeded", job
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="Model directory (default: the embedded model).")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--burst", type=int, default=8, help="Jobs submitted at once for the throughput figure.")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    args = p.parse_args()

    from t2v.generate import get_pipeline, run_generate
    from t2v.request import GenerateRequest

    params = {
        k: v
        for k, v in {
            "prompt": PROMPT,
            "num_frames": args.frames,
            "num_inference_steps": args.steps,
            "height": args.height,
            "width": args.width,
        }.items()
        if v is not None
    }
    tmp = Path(tempfile.mkdtemp(prefix="t2v-bench-server-"))
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "t2v.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(tmp / "data"),
        "--device",
        "cpu",
        "--max-queue",
        str(max(100, args.burst)),
    ] + (["--model", args.model] if args.model else [])
    log = open(tmp / "server.log", "wb")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        for _ in range(600):
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (tmp / "server.log").read_text()
            time.sleep(0.2)
        pipe = get_pipeline(args.model, "cpu", None)
        pipe.set_progress_bar_config(disable=True)
        call = {
            "num_frames": params.get("num_frames", pipe.defaults.num_frames),
            "num_inference_steps": params.get("num_inference_steps", pipe.defaults.num_inference_steps),
            "height": params.get("height", pipe.default_size),
            "width": params.get("width", pipe.default_size),
        }

        # warm up both sides, then alternate
        api_job(client, dict(params, seed=0))
        pipe(PROMPT, seed=0, **call)
        t_pipe, t_gen, t_api = [], [], []
        for i in range(args.runs):
            start = time.perf_counter()
            pipe(PROMPT, seed=i, **call)
            t_pipe.append(time.perf_counter() - start)
            start = time.perf_counter()
            run_generate(
                GenerateRequest(
                    prompt=PROMPT,
                    output=tmp / f"direct-{i}.mp4",
                    model=args.model,
                    device="cpu",
                    seed=i,
                    progress=False,
                    **{k: v for k, v in params.items() if k != "prompt"},
                )
            )
            t_gen.append(time.perf_counter() - start)
            t_api.append(api_job(client, dict(params, seed=i)))
        m_pipe, m_gen, m_api = (statistics.median(t) for t in (t_pipe, t_gen, t_api))

        start = time.perf_counter()
        ids = [
            client.post("/v1/jobs", json=dict(params, seed=100 + i)).raise_for_status().json()["id"]
            for i in range(args.burst)
        ]
        ok = 0
        for i in ids:  # they finish in order: wait for each in turn
            job = {"status": "queued"}
            while job["status"] not in ("succeeded", "failed", "cancelled"):
                job = client.get(f"/v1/jobs/{i}", params={"wait": 60}).json()
            ok += job["status"] == "succeeded"
        burst = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(30)

    print(
        f"model: {args.model or 't2v-shapes (embedded)'}; "
        f"job: {call['num_frames']} frames {call['width']}x{call['height']}, "
        f"{call['num_inference_steps']} steps; {args.runs} runs, medians; "
        f"torch threads {__import__('torch').get_num_threads()}"
    )
    print(f"pipeline call (in process)       {m_pipe:8.3f} s")
    print(f"run_generate (pipeline + mp4)    {m_gen:8.3f} s")
    print(f"API job (POST, long poll, done)  {m_api:8.3f} s")
    print(f"API overhead vs run_generate     {100 * (m_api / m_gen - 1):+7.1f} %   (target <= 5%)")
    print(f"API overhead vs pipeline call    {100 * (m_api / m_pipe - 1):+7.1f} %")
    print(f"throughput: {ok}/{args.burst} jobs in {burst:.1f} s = {60 * ok / burst:.1f} jobs/min")


if __name__ == "__main__":
    main()
