"""The web app: a Gradio page with "Text to video", "Storyboard", "Zero-shot", "Image", "Edit", "Control" and "Tune"
tabs.

It submits to the server's job queue (the same one as `POST /v1/jobs`, so its jobs show in
`GET /v1/jobs`), shows the job's progress, then a video player and a download link that point at
the API's `/v1/jobs/{id}/video` (or a picture, `/image`): the files are served from the data
directory, never copied. The zero-shot and image tabs are in `t2v.server.app_zero`, the edit and control tabs
(a video made from an uploaded one) in `t2v.server.app_video`, the tune tab (a model tuned on an uploaded clip,
and videos from it) in `t2v.server.app_tune`.
"""

from __future__ import annotations

import html
import time

import gradio as gr

from t2v.request import regions_fit
from t2v.server.app_tune import tune_tab
from t2v.server.app_video import video_tabs
from t2v.server.app_zero import image_tabs
from t2v.server.jobs import JobError, JobQueue, QueueFull


EXAMPLES = [
    "a red circle moving right on a black background",
    "a large blue square moving up on a white background",
    "a small yellow triangle moving left on a gray background",
    "a green circle growing on a black background",
]
STORYBOARD_EXAMPLE = """\
fps: 8
transition_frames: 8
scenes:
  - prompt: a red circle moving right on a black background
    frames: 16
  - prompt: a blue square moving up on a black background
    frames: 16
"""
POLL_SECONDS = 0.2
GRADIO_FILES = (600, 3600)  # every 10 minutes, Gradio's copies of the files pages uploaded over an hour ago go


def _player(job: dict) -> str:
    """A video element (mp4, or VP9 webm where a browser has no H.264) and a download link."""
    url = html.escape(job["video_url"])
    return (
        f'<video id="t2v-video" controls autoplay loop muted playsinline style="width:100%;max-width:512px;'
        f'image-rendering:pixelated;background:#000"><source src="{url}" type="video/mp4">'
        f'<source src="{url}?format=webm" type="video/webm"></video>'
        f'<p><a id="t2v-download" href="{url}?download=1" download>Download mp4</a>'
        f" · seed {job['seed']} · job {job['id']}</p>"
    )


def _wait(queue: JobQueue, job_id: str, progress: gr.Progress, render=_player) -> str:
    """Follow a job until it ends; the page's progress bar shows its steps; then `render(job)`."""
    while True:
        job = queue.get(job_id)
        if job["status"] == "queued":
            progress(0.0, desc=f"queued ({job['queue_position']} ahead)")
        elif job["status"] == "running":
            eta = f", about {job['eta_seconds']:.0f} s left" if job["eta_seconds"] is not None else ""
            doing = "tuning" if job["task"] == "tune" else "denoising"
            progress((job["step"], job["total_steps"]), desc=f"{doing}{eta}", unit="steps")
        elif job["status"] == "succeeded":
            return render(job)
        else:
            raise gr.Error(f"job {job['id']} {job['status']}" + (f": {job['error']}" if job["error"] else ""))
        if queue.stopping.is_set():
            raise gr.Error("the server is shutting down; the job stays queued and runs after the restart")
        time.sleep(POLL_SECONDS)


def _settings(frames: bool, pipe, limits) -> list:
    """The generation controls, starting at the model's defaults (with a frame count for one prompt)."""
    defaults, f, size = pipe.defaults, pipe.vae_scale_factor, pipe.default_size
    max_size = max(size, min(limits.max_size, 512))
    controls = []
    if frames:
        controls.append(
            gr.Slider(1, max(16, min(limits.max_frames, 128)), value=defaults.num_frames, step=1, label="Frames")
        )
    with gr.Row():
        controls.append(gr.Slider(f, max_size, value=size, step=f, label="Height"))
        controls.append(gr.Slider(f, max_size, value=size, step=f, label="Width"))
    with gr.Row():
        controls.append(
            gr.Slider(1, min(limits.max_steps, 100), value=defaults.num_inference_steps, step=1, label="Steps")
        )
        controls.append(gr.Slider(0, 20, value=defaults.guidance_scale, step=0.5, label="Guidance"))
    with gr.Row():
        controls.append(gr.Number(-1, precision=0, label="Seed (-1 = random)"))
        controls.append(
            gr.Slider(
                0 if not frames else 1,
                30,
                value=0 if not frames else 8,
                step=1,
                label="FPS" if frames else "FPS (0 = the storyboard's)",
            )
        )
    return controls


def build_ui(queue: JobQueue) -> gr.Blocks:
    """The Gradio Blocks for `queue` (its model is loaded: the controls start at the model's defaults)."""
    pipe, limits = queue.pipe, queue.limits
    defaults, planner = pipe.defaults, pipe.defaults.region_planner

    def submit(body: dict, progress: gr.Progress, render=_player) -> str:
        try:
            job = queue.submit(body, source="app")
        except JobError as e:
            raise gr.Error(f"{e.field}: {e}" if e.field else str(e)) from None
        except QueueFull as e:
            raise gr.Error(str(e)) from None
        return _wait(queue, job["id"], progress, render)

    def common(height, width, steps, guidance, seed, fps):
        return {
            "height": int(height),
            "width": int(width),
            "num_inference_steps": int(steps),
            "guidance_scale": float(guidance),
            "seed": None if seed is None or seed < 0 else int(seed),
            "fps": float(fps),
        }

    def text_to_video(
        prompt, negative, frames, height, width, steps, guidance, seed, fps, regions, progress=gr.Progress()
    ):
        body = dict(
            prompt=prompt,
            negative_prompt=negative or None,
            num_frames=int(frames),
            **common(height, width, steps, guidance, seed, fps),
        )
        # checked: regions wherever they apply (a two-object prompt, one pass); unchecked: never
        body["regions"] = (
            bool(regions) and planner is not None and planner.has_layout(prompt) and regions_fit(defaults, int(frames))
        )
        message = planner.prompt_warning(prompt) if prompt and hasattr(planner, "prompt_warning") else None
        if message:
            gr.Warning(message)
        return submit(body, progress)

    def storyboard(text, negative, height, width, steps, guidance, seed, fps, progress=gr.Progress()):
        body = dict(
            storyboard=text, negative_prompt=negative or None, **common(height, width, steps, guidance, seed, fps)
        )
        if not fps:
            body.pop("fps")  # the storyboard's own
        return submit(body, progress)

    def settings(frames: bool):
        return _settings(frames, pipe, limits)

    with gr.Blocks(title="t2v", delete_cache=GRADIO_FILES) as demo:
        gr.Markdown(
            f"# t2v: text to video\nModel: `{queue.model or 't2v-shapes (embedded)'}` on `{queue.device}`. "
            "Jobs run one at a time on this device; the REST API is under `/v1` "
            "(described in [/openapi.json](/openapi.json))."
        )
        with gr.Tab("Text to video"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(
                        label="Prompt",
                        lines=2,
                        max_length=limits.max_prompt_chars,
                        elem_id="t2v-prompt",
                        placeholder=EXAMPLES[0],
                    )
                    negative = gr.Textbox(label="Negative prompt", max_length=limits.max_prompt_chars)
                    controls = settings(frames=True)
                    controls.append(
                        gr.Checkbox(
                            planner is not None,
                            label="Regions: for a prompt naming two "
                            "objects, each object's words are heard only in its own half of the frame",
                        )
                    )
                    button = gr.Button("Generate", variant="primary", elem_id="t2v-generate")
                    gr.Examples([[e] for e in EXAMPLES], inputs=[prompt])
                output = gr.HTML(label="Video", elem_id="t2v-output")
            button.click(text_to_video, [prompt, negative, *controls], output, concurrency_limit=None)
            prompt.submit(text_to_video, [prompt, negative, *controls], output, concurrency_limit=None)
        with gr.Tab("Storyboard"):
            with gr.Row():
                with gr.Column():
                    board = gr.Code(
                        STORYBOARD_EXAMPLE,
                        language="yaml",
                        label="Storyboard (YAML or JSON: scenes with prompt and frames)",
                    )
                    board_negative = gr.Textbox(label="Negative prompt (overrides the storyboard's)")
                    board_controls = settings(frames=False)
                    board_button = gr.Button("Generate", variant="primary", elem_id="t2v-story-generate")
                board_output = gr.HTML(label="Video", elem_id="t2v-story-output")
            board_button.click(
                storyboard, [board, board_negative, *board_controls], board_output, concurrency_limit=None
            )
        image_tabs(queue, submit)
        video_tabs(queue, submit)
        tune_tab(queue, submit)
    return demo
