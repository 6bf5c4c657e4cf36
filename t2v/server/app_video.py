"""The web app's "Edit" and "Control" tabs: a video made from an uploaded one, submitted to the same job
queue as the other tabs (tasks "edit" and "control").

The file a page uploads (Gradio's file field, size-limited by the server's --max-upload-mb) is checked and
kept as an upload (t2v.server.uploads), exactly as `POST /v1/uploads` keeps one; the job names it as its
source, and it goes with the job. A tab whose model (or ControlNet) this server lacks still shows, with a
note saying why, and the queue refuses its jobs with the same message.
"""

from __future__ import annotations

import contextlib
import html
import math

import gradio as gr

from t2v.models.defaults import ImageModelDefaults
from t2v.server.jobs import JobError, JobQueue
from t2v.server.uploads import UploadError
from t2v.server.video_tasks import CONTROL_KINDS


VIDEO_STYLE = "width:100%;max-width:512px;image-rendering:pixelated;background:#000"
EDIT_EXAMPLES = ["make the square blue", "turn the circle into a triangle", "make the background white"]
CONTROL_EXAMPLES = ["a red circle on a black background", "a blue square on a white background"]


def _figure(label: str, url: str, fmt: str, elem_id: str) -> str:
    """A labelled video (a picture for a gif) from one of the server's URLs."""
    url = html.escape(url)
    if fmt == "gif":
        media = f'<img id="{elem_id}" src="{url}" alt="{html.escape(label)}" style="{VIDEO_STYLE}">'
    else:
        media = (
            f'<video id="{elem_id}" controls autoplay loop muted playsinline style="{VIDEO_STYLE}">'
            f'<source src="{url}" type="video/{fmt}">'
            + (f'<source src="{url}?format=webm" type="video/webm">' if "/v1/jobs/" in url else "")
            + "</video>"
        )
    caption = f"<figcaption>{html.escape(label)}</figcaption>"
    return f'<figure style="margin:0;flex:1;min-width:160px">{caption}{media}</figure>'


def _row(figures: list[str], job: dict) -> str:
    url = html.escape(job["video_url"])
    return (
        f'<div style="display:flex;gap:12px;flex-wrap:wrap">{"".join(figures)}</div>'
        f'<p><a id="t2v-video-download" href="{url}?download=1" download>Download mp4</a>'
        f" · seed {job['seed']} · job {job['id']}</p>"
    )


def _seed(seed) -> int | None:
    return None if seed is None or seed < 0 else int(seed)


def _about(load, what: str) -> tuple[object | None, str]:
    """A model's defaults (it is loaded here if it was not) and a line about it, or None and why not."""
    try:
        return load(), f"From {what}."
    except JobError as e:
        return None, f"**Not available**: {e}"


def _settings(spec, limits) -> list:
    """Frames (0: all of the source's), size, steps, guidance and seed, starting at the model's defaults."""
    d = spec.defaults if spec is not None else ImageModelDefaults()
    f = math.lcm(8, spec.vae_scale_factor) if spec is not None else 8
    size = spec.unet.config.sample_size * spec.vae_scale_factor if spec is not None else 512
    top = max(size, min(limits.max_size, 512))
    with gr.Row():
        controls = [
            gr.Slider(0, max(16, min(limits.max_frames, 128)), value=0, step=1, label="Frames (0 = all)"),
            gr.Slider(f, top, value=size, step=f, label="Height"),
            gr.Slider(f, top, value=size, step=f, label="Width"),
        ]
    with gr.Row():
        controls += [
            gr.Slider(1, max(1, min(limits.max_steps, 100)), value=d.num_inference_steps, step=1, label="Steps"),
            gr.Slider(0, 20, value=d.guidance_scale, step=0.5, label="Guidance"),
            gr.Number(-1, precision=0, label="Seed (-1 = random)"),
        ]
    return controls


def _options(frames, height, width, steps, guidance, seed) -> dict:
    return {
        "num_frames": int(frames) or None,  # 0: all of the source's
        "height": int(height),
        "width": int(width),
        "num_inference_steps": int(steps),
        "guidance_scale": float(guidance),
        "seed": _seed(seed),
    }


class _Jobs:
    """A tab's way to the queue: the page's file kept as an upload, the job submitted and followed."""

    def __init__(self, queue: JobQueue, submit):
        self.queue, self.submit = queue, submit

    def keep(self, path) -> dict:
        if not path:
            raise gr.Error("source: upload a file first")
        try:
            return self.queue.uploads.add_path(path)
        except UploadError as e:
            raise gr.Error(f"source: {e}") from None

    def run(self, body: dict, upload: dict, progress, render) -> str:
        try:
            return self.submit(body, progress, render)
        except gr.Error:
            record = self.queue.uploads.get(upload["id"])
            if record is not None and record["jobs"] == 0:  # refused before it was queued: nothing uses it
                with contextlib.suppress(UploadError):
                    self.queue.uploads.delete(upload["id"])
            raise

    def show_edit(self, job: dict) -> str:
        source = self.queue.uploads.get(str(job["params"].get("source", ""))) or {}
        figures = [_figure("Source", source["url"], source["format"], "t2v-edit-source")] if source else []
        return _row([*figures, _figure("Edited", job["video_url"], "mp4", "t2v-edit-video")], job)

    @staticmethod
    def show_control(job: dict) -> str:
        figures = [_figure("Video", job["video_url"], "mp4", "t2v-control-video")]
        if job.get("control_url"):
            figures.append(_figure(f"{job['params'].get('control')} maps", job["control_url"], "mp4", "t2v-maps"))
        return _row(figures, job)


def video_tabs(queue: JobQueue, submit) -> None:
    """Add the two tabs to the gr.Blocks being built. `submit(body, progress, render)` queues a job and
    follows it to its end (t2v.server.app.build_ui's)."""
    jobs = _Jobs(queue, submit)
    _edit_tab(queue, jobs)
    _control_tab(queue, jobs)


def _edit_tab(queue: JobQueue, jobs: _Jobs) -> None:
    limits = queue.limits
    spec, about = _about(queue.edit_pipeline, f"the edit model `{queue.edit_model or 't2v-shapes-edit'}`")

    def edit(file, instruction, negative, image_guidance, shared, frames, height, width, steps, guidance, seed,
             progress=gr.Progress()):  # fmt: skip
        upload = jobs.keep(file)
        body = {"task": "edit", "source": upload["id"], "prompt": instruction, "negative_prompt": negative or None}
        body.update(_options(frames, height, width, steps, guidance, seed))
        body.update(image_guidance_scale=float(image_guidance), shared_noise=bool(shared))
        return jobs.run(body, upload, progress, jobs.show_edit)

    with gr.Tab("Edit"):
        gr.Markdown(f"Edit a video by a written instruction (Video Instruct-Pix2Pix). {about}")
        with gr.Row():
            with gr.Column():
                file = gr.File(label="Video (.mp4, .webm, .gif)", file_types=[".mp4", ".webm", ".gif"])
                instruction = gr.Textbox(
                    label="Instruction", lines=2, max_length=limits.max_prompt_chars, elem_id="t2v-edit-prompt"
                )
                negative = gr.Textbox(label="Negative prompt", max_length=limits.max_prompt_chars)
                defaults = spec.defaults if spec is not None else ImageModelDefaults()
                with gr.Row():
                    own = [
                        gr.Slider(
                            0,
                            5,
                            value=defaults.image_guidance_scale,
                            step=0.1,
                            label="Image guidance (closeness to the source)",
                        ),
                        gr.Checkbox(defaults.shared_noise, label="One start noise for all frames"),
                    ]
                settings = _settings(spec, limits)
                button = gr.Button("Edit", variant="primary", elem_id="t2v-edit-generate")
                gr.Examples([[e] for e in EDIT_EXAMPLES], inputs=[instruction])
            output = gr.HTML(label="Video", elem_id="t2v-edit-output")
        inputs = [file, instruction, negative, *own, *settings]
        button.click(edit, inputs, output, api_name="edit", concurrency_limit=None)


def _control_tab(queue: JobQueue, jobs: _Jobs) -> None:
    limits = queue.limits
    spec, about = _about(queue.image_pipeline, f"the model `{queue.image_model or 't2v-shapes-image'}`")
    kinds = [k for k in CONTROL_KINDS if k in queue.controlnets]
    if spec is not None:
        about += (
            f" ControlNets on this server: {', '.join(kinds)}."
            if kinds
            else (" **Not available**: this server has no ControlNet (see t2v serve --controlnet KIND=DIR).")
        )

    def control(kind, file, prompt, negative, scale, as_map, frames, height, width, steps, guidance, seed,
                progress=gr.Progress()):  # fmt: skip
        upload = jobs.keep(file)
        body = {"task": "control", "control": kind, "source": upload["id"], "prompt": prompt}
        body.update(negative_prompt=negative or None, conditioning_scale=float(scale), as_map=bool(as_map))
        body.update(_options(frames, height, width, steps, guidance, seed))
        return jobs.run(body, upload, progress, jobs.show_control)

    with gr.Tab("Control"):
        gr.Markdown(f"A video that follows the edges, depth or pose of another (ControlNet). {about}")
        with gr.Row():
            with gr.Column():
                kind = gr.Radio(list(CONTROL_KINDS), value=(kinds or ["edges"])[0], label="Follow")
                file = gr.File(
                    label="Video (.mp4, .webm, .gif), or OpenPose JSON (.json) for pose",
                    file_types=[".mp4", ".webm", ".gif", ".json"],
                )
                prompt = gr.Textbox(
                    label="Prompt", lines=2, max_length=limits.max_prompt_chars, elem_id="t2v-control-prompt"
                )
                negative = gr.Textbox(label="Negative prompt", max_length=limits.max_prompt_chars)
                with gr.Row():
                    own = [
                        gr.Slider(0, 2, value=1.0, step=0.05, label="Conditioning scale"),
                        gr.Checkbox(False, label="The source is already a video of control maps"),
                    ]
                settings = _settings(spec, limits)
                button = gr.Button("Generate", variant="primary", elem_id="t2v-control-generate")
                gr.Examples([[e] for e in CONTROL_EXAMPLES], inputs=[prompt])
            output = gr.HTML(label="Video", elem_id="t2v-control-output")
        inputs = [kind, file, prompt, negative, *own, *settings]
        button.click(control, inputs, output, api_name="control", concurrency_limit=None)
