"""t2v: text-to-video with latent video diffusion.

>>> from t2v import load_pipeline, write_video
>>> pipe = load_pipeline()                      # the embedded model; or a directory / Hub id
>>> frames = pipe("a red circle moving right", seed=0).frames[0]
>>> write_video("out.mp4", frames)
"""

__version__ = "0.1.0"

import importlib


_LAZY = {
    "TextToVideoPipeline": "t2v.pipelines.text_to_video",
    "load_pipeline": "t2v.pipelines.text_to_video",
    "TextToImagePipeline": "t2v.pipelines.text_to_image",
    "TextToVideoZeroPipeline": "t2v.pipelines.text_to_video_zero",
    "ControlVideoPipeline": "t2v.pipelines.control_video",
    "save_model": "t2v.models.loading",
    "write_video": "t2v.video_io",
    "read_video": "t2v.video_io",
    "PatchAutoencoder": "t2v.models.patch_vae",  # named in model_index.json of the embedded model
}


def __getattr__(name):  # import torch and diffusers only when needed (fast `t2v --version`)
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 't2v' has no attribute {name!r}")


__all__ = list(_LAZY)
