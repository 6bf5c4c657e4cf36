"""`t2v serve`: the REST job server and the Gradio app in one process.

    t2v serve [--host 127.0.0.1] [--port 7860] [--data-dir t2v-data] [--model DIR] [--token T]

The data directory holds everything the server keeps: `jobs.db` (SQLite, WAL), `videos/` (the
results) and `gradio/` (Gradio's own scratch files). SIGTERM or Ctrl-C: the server stops taking
work, the running job goes back to the queue, and the process exits within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import uvicorn

from t2v.server.api import Guard, create_api
from t2v.server.jobs import JobError, JobQueue, Limits, QueueFull  # noqa: F401


TOKEN_ENV = "T2V_API_TOKEN"
GRACEFUL_SECONDS = 2  # open connections (a browser's event stream) get this long after SIGTERM


def create_app(queue: JobQueue, token: str | None = None, ui: bool = True):
    """The ASGI app: the API, the Gradio app at / (unless ui=False), the token and body-size guard.

    Starting it (its lifespan) starts the queue's worker; stopping it stops the worker.
    """
    api = create_api(queue, token)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        queue.start()
        yield
        await asyncio.to_thread(queue.stop, 5.0)

    api.router.lifespan_context = lifespan
    if ui:
        import gradio as gr  # here: only the web app needs it, and it takes seconds to import

        from t2v.server.app import build_ui

        font = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts: the page works offline
        theme = gr.themes.Default(font=font, font_mono=["ui-monospace", "monospace"])
        gr.mount_gradio_app(
            api,
            build_ui(queue),
            path="/",
            ssr_mode=False,
            theme=theme,
            footer_links=["api"],
            max_file_size=queue.limits.max_body_bytes,
        )
    api.add_middleware(Guard, token=token, max_body_bytes=queue.limits.max_body_bytes)
    return api


def serve(
    host: str = "127.0.0.1",
    port: int = 7860,
    data_dir: str | Path = "t2v-data",
    model: str | None = None,
    token: str | None = None,
    device: str = "auto",
    dtype: str | None = None,
    limits: Limits | None = None,
    log_level: str = "info",
) -> None:
    """Load the model, then serve until SIGTERM/SIGINT. Raises ValueError for a bad model or data directory."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(data_dir / "gradio")  # Gradio's scratch files stay in the data directory
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    token = token or os.environ.get(TOKEN_ENV) or None
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        print(
            f"warning: serving on {host} without an API token: anyone who can reach it can run jobs (see --token)",
            flush=True,
        )
    queue = JobQueue(data_dir, model=model, device=device, dtype=dtype, limits=limits)
    print(f"loading model {model or 't2v-shapes (embedded)'} on {queue.device} ...", flush=True)
    queue.load()
    app = create_app(queue, token)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            queue.stopping.set()  # stop taking work at once; the lifespan's shutdown waits for the worker
            queue.wake.set()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        limit_concurrency=256,
        timeout_keep_alive=5,
    )
    print(
        f"t2v serving on http://{host}:{port}/ (API docs at /docs, data in {data_dir})"
        + (" with an API token" if token else ""),
        flush=True,
    )
    try:
        Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, once everything is stopped
        pass
