"""t2v: text-to-video with latent video diffusion."""

__version__ = "0.1.0"
