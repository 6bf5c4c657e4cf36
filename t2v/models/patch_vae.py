"""A linear patch autoencoder fitted by PCA: the first stage of the embedded model.

Each 8x8 RGB patch (192 numbers) becomes `latent_channels` numbers: its coordinates on the
principal components of Shapes-world patches, divided by max(std, min_std): the strong channels
(brightness, colour) get unit variance, what the diffusion stage expects, while the weak detail
channels keep their natural, smaller scale, so the diffusion model settles coarse structure before
detail, as pixel-space diffusion does (whitened detail channels come out as 8x8 block noise).
Decoding is the transpose. It is fitted in closed form in seconds and decodes a 16-frame video in
milliseconds on a CPU.

Why not AutoencoderKL: these frames are flat colours (colour is a few percent of the pixels), which
GroupNorm normalises away, so a convolutional autoencoder trained from scratch on a CPU budget stays
blurry and grey, while this PCA fit keeps every attribute the evaluation judges. It speaks diffusers'
first-stage interface (`encode(x).latents`, `decode(z).sample`, `config.scaling_factor`,
`config.block_out_channels` for the downsampling factor), so TextToVideoSDPipeline runs it too.

The refiner (optional, `refiner_channels` > 0): the diffusion model's samples are not exactly on the
latents of real frames, and the linear decoder turns their error into 8x8 blotches that change every
frame (which the evaluation counts as stray objects). The refiner is a small residual conv net over
the latent grid (3x3 kernels, so each patch sees its neighbours) applied before the linear decoder;
it is trained on clean latents of real frames plus noise (`t2v train` stage "decoder") to give back
the clean frame, and starts as the identity (last layer zero), so an untrained refiner changes
nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput


@dataclass
class PatchEncoderOutput(BaseOutput):
    latents: torch.Tensor


def make_refiner(latent_channels: int, channels: int, layers: int) -> torch.nn.Sequential:
    """`layers` 3x3 convolutions over the latent grid (SiLU between), the last one zero: the identity at first."""
    if layers < 2:
        raise ValueError(f"refiner_layers must be >= 2, got {layers}")
    widths = [latent_channels] + [channels] * (layers - 1) + [latent_channels]
    modules = []
    for i in range(layers):
        modules += [torch.nn.Conv2d(widths[i], widths[i + 1], 3, padding=1), torch.nn.SiLU()]
    net = torch.nn.Sequential(*modules[:-1])
    torch.nn.init.zeros_(net[-1].weight)
    torch.nn.init.zeros_(net[-1].bias)
    return net


class PatchAutoencoder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        patch_size: int = 8,
        in_channels: int = 3,
        latent_channels: int = 32,
        scaling_factor: float = 1.0,
        block_out_channels: tuple[int, ...] | None = None,
        refiner_channels: int = 0,
        refiner_layers: int = 3,
    ):
        super().__init__()
        if patch_size < 1 or patch_size & (patch_size - 1):
            raise ValueError(f"patch_size must be a power of two, got {patch_size}")
        # diffusers pipelines compute the downsampling factor as 2 ** (len(block_out_channels) - 1)
        self.register_to_config(block_out_channels=[latent_channels] * (int(math.log2(patch_size)) + 1))
        self.encoder = torch.nn.Conv2d(in_channels, latent_channels, patch_size, stride=patch_size)
        self.decoder = torch.nn.ConvTranspose2d(latent_channels, in_channels, patch_size, stride=patch_size)
        self.refiner = make_refiner(latent_channels, refiner_channels, refiner_layers) if refiner_channels else None

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        z = self.encoder(x)
        return PatchEncoderOutput(latents=z) if return_dict else (z,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, **kwargs):
        if self.refiner is not None:
            z = z + self.refiner(z)
        x = self.decoder(z)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(self, x: torch.Tensor, return_dict: bool = True):
        return self.decode(self.encode(x).latents, return_dict=return_dict)

    def enable_tiling(self, *args, **kwargs):  # patches are independent: decoding is always tiled
        pass

    def disable_tiling(self):
        pass

    @torch.no_grad()
    def fit(self, frames: torch.Tensor, min_std: float = 0.0) -> dict:
        """Fit to frames [N, C, H, W] in [-1, 1]: PCA of patches, each channel divided by max(std, min_std).

        min_std=0 whitens every channel. Returns fit statistics.
        """
        p, c, k = self.config.patch_size, self.config.in_channels, self.config.latent_channels
        if frames.shape[-1] % p or frames.shape[-2] % p:
            raise ValueError(f"frame size {tuple(frames.shape[-2:])} is not a multiple of patch_size {p}")
        patches = F.unfold(frames.float(), p, stride=p).transpose(1, 2).reshape(-1, c * p * p)
        channel_mean = frames.float().mean(dim=(0, 2, 3))  # per colour channel
        mean = channel_mean.repeat_interleave(p * p)  # unfold's order: channel-major
        _, s, v = torch.linalg.svd(patches - mean, full_matrices=False)
        std = (s[:k] / math.sqrt(len(patches) - 1)).clamp(min=min_std)
        components = v[:k]  # [k, c*p*p]
        self.encoder.weight.copy_((components / std[:, None]).reshape(k, c, p, p))
        self.encoder.bias.copy_(-(components / std[:, None]) @ mean)
        self.decoder.weight.copy_((components * std[:, None]).reshape(k, c, p, p))
        self.decoder.bias.copy_(channel_mean)
        kept = float((s[:k] ** 2).sum() / (s**2).sum())
        recon = self.decode(self.encode(frames.float()).latents).sample.clamp(-1, 1)
        psnr = float(10 * torch.log10(4 / F.mse_loss(recon, frames.float())))
        return {"variance_kept": kept, "psnr_db": psnr, "patches": len(patches)}
