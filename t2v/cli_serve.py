"""`t2v serve`: the REST job server and the web app (t2v.cli registers it; t2v.server runs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from t2v.cli_util import fail


CONTROL_KINDS = ("edges", "depth", "pose")  # (t2v.video_jobs.CONTROL_KINDS, not imported: --help needs no torch)


def controlnet_folders(values: list[str]) -> dict[str, str]:
    """--controlnet KIND=DIR values -> {kind: folder}; a bad one is a one-line error (exit 2)."""
    folders = {}
    for value in values:
        kind, _, folder = value.partition("=")
        kind = kind.strip().lower()
        if kind not in CONTROL_KINDS or not folder.strip():
            fail(f"--controlnet takes KIND=DIR with KIND one of {', '.join(CONTROL_KINDS)}, got {value!r}")
        if kind in folders:
            fail(f"--controlnet {kind}= is given twice")
        folders[kind] = folder.strip()
    return folders


def _limits(
    port, header_timeout, max_frames, max_size, max_steps, max_queue, max_client_connections, max_cost,
    max_upload_mb, max_uploads, upload_ttl, max_tune_steps=1000, max_tuned_models=10,
):  # fmt: skip
    """The options checked (a bad one is a one-line error, exit 2) -> the server's Limits."""
    from t2v.server import Limits

    counts = (port, max_frames, max_size, max_steps, max_queue, max_client_connections, max_uploads, max_tune_steps)
    counts += (max_tuned_models,)
    if min(counts) < 1 or port > 65535:
        fail("--port must be in 1..65535 and --max-* >= 1")
    if max_cost is not None and not 0 < max_cost < float("inf"):
        fail("--max-cost must be a positive number")
    if not 0 < header_timeout <= 3600:
        fail("--header-timeout must be in (0, 3600] seconds")
    if not 0 < max_upload_mb <= 64 * 1024:
        fail("--max-upload-mb must be in (0, 65536]")
    if not 0 < upload_ttl <= 24 * 365:
        fail("--upload-ttl must be in (0, 8760] hours")
    return Limits(
        max_frames=max_frames,
        max_size=max_size,
        max_steps=max_steps,
        max_queue=max_queue,
        max_cost=max_cost,
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_uploads=max_uploads,
        upload_ttl=upload_ttl * 3600,
        max_tune_steps=max_tune_steps,
        max_tuned_models=max_tuned_models,
    )


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(7860, "--port"),
    data_dir: Path = typer.Option(
        Path("t2v-data"), "--data-dir", readable=False, help="Jobs database (SQLite), uploads and result files."
    ),  # (readable=False: checked by the server, in one line)
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model directory or Hub id (default: the embedded model)."
    ),
    image_model: Optional[str] = typer.Option(
        None,
        "--image-model",
        help="Text-to-image model of image, zero-shot, control and tune jobs: an SD-layout directory or Hub id "
        "(default: the embedded t2v-shapes-image; without it those jobs are refused).",
    ),
    edit_model: Optional[str] = typer.Option(
        None,
        "--edit-model",
        help="Instruct-Pix2Pix model of edit jobs: a directory or Hub id (default: the embedded t2v-shapes-edit; "
        "without it edit jobs are refused).",
    ),
    controlnet: list[str] = typer.Option(
        [],
        "--controlnet",
        help="KIND=DIR: the ControlNet folder (diffusers, safetensors) of control jobs of KIND (edges, depth or "
        "pose), made for the text-to-image model (repeatable; a kind without one is refused).",
    ),
    depth_model: Optional[Path] = typer.Option(
        None,
        "--depth-model",
        help="A transformers depth-estimation model folder: depth control jobs from a normal video (without it, "
        "depth jobs take videos of depth maps only).",
    ),
    token: Optional[str] = typer.Option(
        None, "--token", help="Require this API token on every endpoint (or set T2V_API_TOKEN)."
    ),
    device: str = typer.Option("auto", "--device"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    max_frames: int = typer.Option(256, "--max-frames", help="Most frames a job may ask for."),
    max_size: int = typer.Option(1024, "--max-size", help="Largest height or width in pixels."),
    max_steps: int = typer.Option(1000, "--max-steps", help="Most denoising steps."),
    max_queue: int = typer.Option(100, "--max-queue", help="Most queued jobs; more are refused with 429."),
    max_cost: Optional[float] = typer.Option(
        None,
        "--max-cost",
        help="Most megapixel-steps a job may ask for (frames x height x width x steps / 1e6; "
        "default: 100 on cpu, 1000 on mps, 10000 on cuda).",
    ),
    max_upload_mb: float = typer.Option(64, "--max-upload-mb", help="Largest uploaded file (413 past it)."),
    max_uploads: int = typer.Option(
        100, "--max-uploads", help="Most uploads kept that no job uses yet; more are refused with 429."
    ),
    upload_ttl: float = typer.Option(
        24, "--upload-ttl", help="Hours an upload that no job uses is kept (then it is removed)."
    ),
    max_tune_steps: int = typer.Option(1000, "--max-tune-steps", help="Most tuning steps of a tune job."),
    max_tuned_models: int = typer.Option(
        10, "--max-tuned-models", help="Most tuned models kept (tune jobs not failed or cancelled); more are refused."
    ),
    allowed_host: list[str] = typer.Option(
        [],
        "--allowed-host",
        help="Also answer to this Host name (repeatable; .example.com: it and its subdomains; *: any). "
        "Localhost names and the --host address are always allowed.",
    ),
    header_timeout: float = typer.Option(
        10.0, "--header-timeout", help="Seconds a client has to send a request's headers, and then its body."
    ),
    max_client_connections: int = typer.Option(
        32, "--max-client-connections", help="Open connections from one address (idle ones make room)."
    ),
):
    """Serve the REST job API (/v1/jobs, OpenAPI at /openapi.json) and the web app (/) from one process."""
    from t2v.server import Network
    from t2v.server import serve as run_server

    limits = _limits(
        port, header_timeout, max_frames, max_size, max_steps, max_queue, max_client_connections, max_cost,
        max_upload_mb, max_uploads, upload_ttl, max_tune_steps, max_tuned_models,
    )  # fmt: skip
    network = Network(
        allowed_hosts=allowed_host, header_timeout=header_timeout, max_client_connections=max_client_connections
    )
    try:
        run_server(
            host,
            port,
            data_dir,
            model,
            token,
            device,
            dtype,
            limits,
            network=network,
            image_model=image_model,
            edit_model=edit_model,
            controlnets=controlnet_folders(controlnet),
            depth_model=str(depth_model) if depth_model is not None else None,
        )
    except (ValueError, OSError) as e:  # a bad model, data directory or address: one line, exit 2
        fail(str(e))
