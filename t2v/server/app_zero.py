"""The web app's "Zero-shot" and "Image" tabs: a video (Text2Video-Zero) or a picture from the server's
text-to-image model, submitted to the same job queue as the other tabs (tasks "zero-shot" and "image").

The controls start at the text-to-image model's defaults; a server without that model still shows the
tabs, with a note saying why, and the queue refuses their jobs with the same message.
"""

from __future__ import annotations

import html

import gradio as gr

from t2v.models.defaults import ImageModelDefaults
from t2v.server.jobs import JobError, JobQueue


MOTION_STEP = 0.25  # pixels per frame
EXAMPLES = [
    "a red circle on a black background",
    "a large blue square on a white background",
    "a small yellow triangle on a gray background",
]


def _picture(job: dict) -> str:
    """The picture and a download link, from the API's /v1/jobs/{id}/image."""
    url = html.escape(job["image_url"])
    return (
        f'<img id="t2v-image" src="{url}" alt="the picture of job {job["id"]}" style="width:100%;max-width:512px;'
        f'image-rendering:pixelated;background:#000">'
        f'<p><a id="t2v-image-download" href="{url}?download=1" download>Download png</a>'
        f" · seed {job['seed']} · job {job['id']}</p>"
    )


def _seed(seed) -> int | None:
    return None if seed is None or seed < 0 else int(seed)


def _model(queue: JobQueue) -> tuple[ImageModelDefaults, str | None]:
    """The text-to-image model's defaults (it is loaded here if it was not), or the fallbacks and why not."""
    try:
        return queue.image_pipeline().defaults, None
    except JobError as e:
        return ImageModelDefaults(), str(e)


def image_tabs(queue: JobQueue, submit) -> None:
    """Add the two tabs to the gr.Blocks being built. `submit(body, progress, render)` queues a job and
    follows it to its end (t2v.server.app.build_ui's)."""
    defaults, missing = _model(queue)
    limits = queue.limits
    check = getattr(defaults.region_planner, "prompt_warning", None)
    name = queue.image_model or "t2v-shapes-image (embedded)"
    about = f"From the text-to-image model `{name}`." if not missing else f"**Not available**: {missing}"

    def warn(prompt):
        message = check(prompt) if check is not None and isinstance(prompt, str) and prompt.strip() else None
        if message:
            gr.Warning(message)  # what the model cannot draw: said before the job runs, as in the first tab

    def zero_shot(prompt, negative, motion_x, motion_y, zoom, frames, steps, guidance, seed, progress=gr.Progress()):
        warn(prompt)
        body = {
            "task": "zero-shot",
            "prompt": prompt,
            "negative_prompt": negative or None,
            "motion_x": float(motion_x),
            "motion_y": float(motion_y),
            "zoom": float(zoom),
            "num_frames": int(frames),
            "num_inference_steps": int(steps),
            "guidance_scale": float(guidance),
            "seed": _seed(seed),
        }
        return submit(body, progress)

    def image(prompt, negative, steps, guidance, seed, progress=gr.Progress()):
        warn(prompt)
        body = {
            "task": "image",
            "prompt": prompt,
            "negative_prompt": negative or None,
            "num_inference_steps": int(steps),
            "guidance_scale": float(guidance),
            "seed": _seed(seed),
        }
        return submit(body, progress, _picture)

    def common(steps: int, low: int) -> list:
        with gr.Row():
            controls = [
                gr.Slider(low, max(low, min(limits.max_steps, 100)), value=steps, step=1, label="Steps"),
                gr.Slider(0, 20, value=defaults.guidance_scale, step=0.5, label="Guidance"),
                gr.Number(-1, precision=0, label="Seed (-1 = random)"),
            ]
        return controls

    with gr.Tab("Zero-shot"):
        gr.Markdown(
            f"A video without a video model (Text2Video-Zero): one picture's content moved by a motion field. {about}"
        )
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(
                    label="Prompt", lines=2, max_length=limits.max_prompt_chars, elem_id="t2v-zero-prompt"
                )
                negative = gr.Textbox(label="Negative prompt", max_length=limits.max_prompt_chars)
                with gr.Row():
                    motion = [
                        gr.Slider(
                            -16, 16, value=1.0, step=MOTION_STEP, label="Motion x (pixels per frame, + = right)"
                        ),
                        gr.Slider(-16, 16, value=0.0, step=MOTION_STEP, label="Motion y (pixels per frame, + = down)"),
                        gr.Slider(0.8, 1.25, value=1.0, step=0.01, label="Zoom (scale per frame)"),
                    ]
                top = max(16, min(limits.max_frames, 64))
                frames = gr.Slider(1, top, value=min(defaults.video_length, top), step=1, label="Frames")
                controls = common(defaults.zero_shot_steps, 2)
                button = gr.Button("Generate", variant="primary", elem_id="t2v-zero-generate")
                gr.Examples([[e] for e in EXAMPLES], inputs=[prompt])
            output = gr.HTML(label="Video", elem_id="t2v-zero-output")
        inputs = [prompt, negative, *motion, frames, *controls]
        button.click(zero_shot, inputs, output, api_name="zero_shot", concurrency_limit=None)
    with gr.Tab("Image"):
        gr.Markdown(f"A picture. {about}")
        with gr.Row():
            with gr.Column():
                image_prompt = gr.Textbox(
                    label="Prompt", lines=2, max_length=limits.max_prompt_chars, elem_id="t2v-image-prompt"
                )
                image_negative = gr.Textbox(label="Negative prompt", max_length=limits.max_prompt_chars)
                image_controls = common(defaults.num_inference_steps, 1)
                image_button = gr.Button("Generate", variant="primary", elem_id="t2v-image-generate")
                gr.Examples([[e] for e in EXAMPLES], inputs=[image_prompt])
            image_output = gr.HTML(label="Picture", elem_id="t2v-image-output")
        image_inputs = [image_prompt, image_negative, *image_controls]
        image_button.click(image, image_inputs, image_output, api_name="image", concurrency_limit=None)
