"""`t2v serve`: the REST job server and the Gradio app in one process.

    t2v serve [--host 127.0.0.1] [--port 7860] [--data-dir t2v-data] [--model DIR] [--image-model DIR] [--token T]
              [--edit-model DIR] [--controlnet KIND=DIR ...] [--depth-model DIR] [--max-upload-mb 64]
              [--max-tune-steps 1000] [--max-tuned-models 10]

The data directory holds everything the server keeps: `jobs.db` (SQLite, WAL), `videos/` (the
results), `uploads/` (the source files of edit, control and tune jobs), `models/` (the models tune jobs
made) and `gradio/` (Gradio's own scratch files). SIGTERM or Ctrl-C: the server stops taking
work, the running job goes back to the queue, and the process exits within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from t2v.models.loading import DEFAULT_EDIT_MODEL_NAME, DEFAULT_IMAGE_MODEL_NAME
from t2v.server.api import create_api
from t2v.server.connections import guarded_protocol
from t2v.server.guard import Guard, Hosts, redact_tokens_in_logs
from t2v.server.jobs import JobError, JobQueue, Limits, QueueFull  # noqa: F401


TOKEN_ENV = "T2V_API_TOKEN"
GRACEFUL_SECONDS = 2  # open connections (a browser's event stream) get this long after SIGTERM


@dataclass
class Network:
    """Who may connect, and for how long (the serve options --allowed-host, --header-timeout etc.)."""

    allowed_hosts: list[str] = field(default_factory=list)  # beyond localhost names and the bound address
    header_timeout: float = 10.0  # seconds to send a request's headers, and then its body
    keep_alive: int = 5  # seconds an idle kept-alive connection stays open
    max_client_connections: int = 32  # open connections from one address
    max_connections: int = 256  # open connections in all
    max_header_bytes: int = 16 * 1024  # a request line and headers; more is a 431 (or 400 from h11)


def create_app(
    queue: JobQueue,
    token: str | None = None,
    ui: bool = True,
    hosts: Hosts | None = None,
    network: Network | None = None,
):
    """The ASGI app: the API, the Gradio app at / (unless ui=False), behind the `Guard` (hosts, origins,
    token, uploads, header and body sizes, body time, security headers; `hosts`: localhost names by
    default; `network`: the limits, `Network()` by default).

    Starting it (its lifespan) starts the queue's worker; stopping it stops the worker.
    """
    api, net = create_api(queue, token), network or Network()

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
            max_file_size=queue.limits.max_upload_bytes,  # (the edit and control tabs' file fields)
        )
    api.add_middleware(
        Guard,
        token=token,
        max_body_bytes=queue.limits.max_body_bytes,
        hosts=hosts or Hosts("127.0.0.1"),
        body_seconds=net.header_timeout,
        max_header_bytes=net.max_header_bytes,
        max_upload_bytes=queue.limits.max_upload_bytes,
    )
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
    network: Network | None = None,
    image_model: str | None = None,
    edit_model: str | None = None,
    controlnets: dict[str, str] | None = None,
    depth_model: str | None = None,
) -> None:
    """Load the models, then serve until SIGTERM/SIGINT.

    Raises ValueError, one line, for a bad model, data directory (unusable, or a `jobs.db` that is not
    a job database) or address (the port in use): all before the model is loaded. `image_model`: the
    text-to-image model of image and zero-shot jobs; a bad one given is a ValueError too, but without one
    (None) the server starts even when the embedded one cannot be loaded, and refuses those jobs; the same
    for `edit_model` and edit jobs. `controlnets` (kind -> folder) and `depth_model`, for control jobs, must
    load (and the ControlNets fit the text-to-image model).
    """
    net = network or Network()
    data_dir = Path(data_dir).resolve()
    os.environ["GRADIO_TEMP_DIR"] = str(data_dir / "gradio")  # Gradio's scratch files stay in the data directory
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    token = token or os.environ.get(TOKEN_ENV) or None
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        print(
            f"warning: serving on {host} without an API token: anyone who can reach it can run jobs (see --token)",
            flush=True,
        )
    queue = JobQueue(
        data_dir,
        model=model,
        device=device,
        dtype=dtype,
        limits=limits,
        image_model=image_model,
        edit_model=edit_model,
        controlnets=controlnets,
        depth_model=depth_model,
    )
    sock = _bind(host, port)  # before the model loads: a port in use is said at once
    print(f"loading model {model or 't2v-shapes (embedded)'} on {queue.device} ...", flush=True)
    queue.load()
    load_image_model(queue)
    load_video_models(queue)
    app = create_app(queue, token, hosts=Hosts(host, net.allowed_hosts), network=net)
    banner = (
        f"t2v serving on http://{host if ':' not in host else f'[{host}]'}:{port}/ (API at /v1, OpenAPI at "
        f"/openapi.json, data in {data_dir})" + (" with an API token" if token else "")
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            queue.stopping.set()  # stop taking work at once; the lifespan's shutdown waits for the worker
            queue.wake.set()
            super().handle_exit(sig, frame)

        async def startup(self, sockets=None):
            await super().startup(sockets)
            if self.started:  # listening: only now is the address worth printing
                print(banner, flush=True)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=guarded_protocol(net.header_timeout, net.max_client_connections, net.max_connections),
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        limit_concurrency=net.max_connections + 64,  # (tasks; connections are limited by the protocol)
        timeout_keep_alive=net.keep_alive,
        h11_max_incomplete_event_size=net.max_header_bytes,
    )
    redact_tokens_in_logs()
    try:
        Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, once everything is stopped
        pass


def load_image_model(queue: JobQueue) -> bool:
    """Load the queue's text-to-image model at start-up. One that was asked for (--image-model) must load
    (a ValueError otherwise); without one, a missing or broken embedded model is said in a line, and the
    server runs without it: image, zero-shot, control and tune jobs are refused (422 on "task") until it is
    installed."""
    name = queue.image_model or f"{DEFAULT_IMAGE_MODEL_NAME} (embedded)"
    print(f"loading image model {name} on {queue.device} ...", flush=True)
    try:
        queue.load_image()
        return True
    except (ValueError, OSError) as e:
        if queue.image_model is not None:
            raise ValueError(f"image model: {e}") from None
        print(
            f"note: no image model ({e}); image, zero-shot, control and tune jobs are refused (see --image-model)",
            flush=True,
        )
        return False


def load_video_models(queue: JobQueue) -> bool:
    """Check the ControlNets (each must load and fit the text-to-image model) and the depth model given, then
    load the edit model: one asked for (--edit-model) must load, a missing embedded one is said in a line and
    edit jobs are refused. A ValueError, one line, for a bad one given; False when edit jobs are refused."""
    from t2v.controls import load_depth_model
    from t2v.video_jobs import get_control_pipeline, load_controlnet

    for kind, folder in queue.controlnets.items():
        print(f"checking the {kind} ControlNet {folder} ...", flush=True)
        try:
            if queue.image_pipe is not None:
                get_control_pipeline(queue.image_model, folder, queue.device, queue.dtype)
            else:  # (no text-to-image model: control jobs are refused anyway)
                load_controlnet(folder)
        except (ValueError, OSError) as e:
            raise ValueError(f"controlnet {kind}: {e}") from None
    if queue.depth_model is not None:
        try:
            load_depth_model(queue.depth_model)
        except (ValueError, OSError) as e:
            raise ValueError(f"depth model: {e}") from None
    name = queue.edit_model or f"{DEFAULT_EDIT_MODEL_NAME} (embedded)"
    print(f"loading edit model {name} on {queue.device} ...", flush=True)
    try:
        queue.load_edit()
        return True
    except (ValueError, OSError) as e:
        if queue.edit_model is not None:
            raise ValueError(f"edit model: {e}") from None
        print(f"note: no edit model ({e}); edit jobs are refused (see --edit-model)", flush=True)
        return False


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (listening starts with the server), or a one-line ValueError."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock
