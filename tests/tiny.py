"""Tiny randomly initialised components, the diffusers way: seeded, CPU, no downloads."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, UNet3DConditionModel
from transformers import BertConfig, BertModel, BertTokenizerFast, CLIPTextConfig, CLIPTextModel, CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from t2v.models.text_encoders import minilm_dir
from t2v.pipelines.text_to_video import TextToVideoPipeline


def tiny_unet(cross_attention_dim: int = 16) -> UNet3DConditionModel:
    torch.manual_seed(0)
    return UNet3DConditionModel(
        block_out_channels=(8, 8),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=2,
    )


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=2,
        sample_size=32,
    )


def tiny_taesd() -> AutoencoderTiny:
    torch.manual_seed(0)
    return AutoencoderTiny(
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=4,
    )


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer with no merges: every byte is a token (no download needed)."""
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=24)


def tiny_clip_text_encoder(vocab_size: int) -> CLIPTextModel:
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_attention_heads=2,
        num_hidden_layers=2,
        max_position_embeddings=32,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    return CLIPTextModel(config)


def tiny_bert(vocab_size: int) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_attention_heads=2,
        num_hidden_layers=2,
        max_position_embeddings=64,
    )
    config.use_attention_mask = True
    return BertModel(config, add_pooling_layer=False)


def tiny_pipeline(tmp: Path, encoder: str = "clip", vae: str = "kl") -> TextToVideoPipeline:
    """A tiny pipeline: 16x16 latents -> 32x32 frames, DDIM, CLIP or BERT text encoder."""
    if encoder == "clip":
        tokenizer = tiny_clip_tokenizer()
        text_encoder = tiny_clip_text_encoder(len(tokenizer))
    else:
        tokenizer = BertTokenizerFast.from_pretrained(minilm_dir(), model_max_length=16)
        text_encoder = tiny_bert(tokenizer.vocab_size)
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False)
    pipe = TextToVideoPipeline(
        vae=tiny_vae() if vae == "kl" else tiny_taesd(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=tiny_unet(),
        scheduler=scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
