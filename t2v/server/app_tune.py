"""The web app's "Tune" tab: one-shot tuning (Tune-A-Video) of the server's text-to-image model on an uploaded clip
and its caption (task "tune"), then videos from the tuned model (task "generate" with "tuned_model"), submitted to
the same job queue as the other tabs.

The clip a page uploads is kept as the tune job's upload (as in the "Edit" tab) and shown beside the videos made
from the model. The tuned model's id (its tune job's) fills the "Tuned model" box, which also takes the id of an
earlier tune job of this server. A server without a text-to-image model still shows the tab, with a note saying
why, and the queue refuses its jobs with the same message.
"""

from __future__ import annotations

import html

import gradio as gr

from t2v.server.app_video import _about, _figure, _Jobs, _row, _seed
from t2v.server.jobs import JobQueue
from t2v.training.tune import TUNE_LR, TUNE_STEPS
from t2v.tuning import GUIDANCE


CAPTION = "a small red circle moving right on a black background"
EDITS = [
    "a small blue circle moving right on a black background",
    "a small red square moving right on a black background",
]


def _source(queue: JobQueue, tune_job: dict | None, elem_id: str) -> list[str]:
    """The clip a tune job was tuned on, as a figure (none when its upload is gone)."""
    upload = queue.uploads.get(str((tune_job or {}).get("params", {}).get("source", ""))) or {}
    return [_figure("Source clip", upload["url"], upload["format"], elem_id)] if upload else []


def tune_tab(queue: JobQueue, submit) -> None:
    """Add the tab to the gr.Blocks being built. `submit(body, progress, render)` queues a job and follows it to
    its end (t2v.server.app.build_ui's)."""
    jobs, limits = _Jobs(queue, submit), queue.limits
    _, about = _about(queue.image_pipeline, f"the model `{queue.image_model or 't2v-shapes-image'}`")

    def show_tuned(job: dict) -> tuple[str, str]:
        r = job["result"] or {}
        text = (
            f"<p id='t2v-tuned'>Tuned model <code>{html.escape(job['id'])}</code>: {r.get('steps')} steps on "
            f"{r.get('num_frames')} frames of {r.get('width')}x{r.get('height')}.</p>"
        )
        figures = _source(queue, job, "t2v-tune-source")
        return text + (f'<div style="display:flex;gap:12px">{figures[0]}</div>' if figures else ""), job["id"]

    def show_video(job: dict) -> str:
        start = "from the clip's inversion" if job["params"].get("invert") else "from noise"
        figures = _source(queue, queue.get(str(job["params"].get("tuned_model", ""))), "t2v-tuned-source")
        return _row([*figures, _figure(f"Generated ({start})", job["video_url"], "mp4", "t2v-tuned-video")], job)

    def tune(file, caption, frames, steps, lr, seed, progress=gr.Progress()):
        upload = jobs.keep(file)
        body = {"task": "tune", "source": upload["id"], "prompt": caption, "num_frames": int(frames) or None}
        body.update(steps=int(steps), lr=float(lr), seed=max(0, int(seed or 0)))
        return jobs.run(body, upload, progress, show_tuned)

    def generate(model, prompt, invert, guidance, seed, progress=gr.Progress()):
        if not (model or "").strip():
            raise gr.Error("tuned_model: tune a model first (or give the id of a tune job)")
        body = {"prompt": prompt, "tuned_model": model.strip(), "invert": bool(invert)}
        body.update(guidance_scale=float(guidance), seed=_seed(seed))
        return submit(body, progress, show_video)

    with gr.Tab("Tune"):
        gr.Markdown(
            "Tune a video model on one clip and its caption (Tune-A-Video), then make videos of the clip's motion "
            f"with new content by editing the caption. {about}"
        )
        with gr.Row():
            with gr.Column():
                file = gr.File(label="Clip (.mp4, .webm, .gif)", file_types=[".mp4", ".webm", ".gif"])
                caption = gr.Textbox(
                    label="Caption: what the clip shows", max_length=limits.max_prompt_chars, placeholder=CAPTION,
                    elem_id="t2v-tune-caption",
                )  # fmt: skip
                with gr.Row():
                    top = max(1, min(limits.max_tune_steps, 1000))
                    options = [
                        gr.Slider(0, max(2, min(limits.max_frames, 128)), value=0, step=1,
                                  label="Frames (0 = 16, or all of a shorter clip)"),
                        gr.Slider(1, top, value=min(TUNE_STEPS, top), step=1, label="Tuning steps"),
                        gr.Number(TUNE_LR, label="Learning rate"),
                        gr.Number(0, precision=0, label="Seed"),
                    ]  # fmt: skip
                tune_button = gr.Button("Tune", variant="primary", elem_id="t2v-tune")
            tuned = gr.HTML(label="Tuned model", elem_id="t2v-tune-output")
        with gr.Row():
            with gr.Column():
                model = gr.Textbox(label="Tuned model (the id of a tune job)", elem_id="t2v-tuned-model")
                prompt = gr.Textbox(
                    label="Prompt: the caption, edited", lines=2, max_length=limits.max_prompt_chars,
                    elem_id="t2v-tuned-prompt",
                )  # fmt: skip
                with gr.Row():
                    settings = [
                        gr.Checkbox(True, label="Start from the clip's inversion"),
                        gr.Slider(0, 20, value=GUIDANCE, step=0.5, label="Guidance"),
                        gr.Number(-1, precision=0, label="Seed (-1 = random)"),
                    ]
                button = gr.Button("Generate", variant="primary", elem_id="t2v-tuned-generate")
                gr.Examples([[e] for e in EDITS], inputs=[prompt])
            output = gr.HTML(label="Video", elem_id="t2v-tuned-output")
        tune_button.click(tune, [file, caption, *options], [tuned, model], api_name="tune", concurrency_limit=None)
        button.click(generate, [model, prompt, *settings], output, api_name="tune_generate", concurrency_limit=None)
