"""Prompt encoding shared by t2v's pipelines, with the arguments and behaviour of diffusers'.

`encode_prompt` returns per-token embeddings for the prompts and, with guidance, for the negative
prompts, as diffusers' `TextToVideoSDPipeline.encode_prompt` does: given `prompt_embeds` and no
`negative_prompt_embeds`, the negative side is encoded from `negative_prompt` (or "" for each
prompt), never zeros; `clip_skip` takes an earlier layer's hidden states (CLIP's final layer norm
applied when the encoder has one); textual inversion tokens are expanded when the pipeline loaded
them (diffusers' `TextualInversionLoaderMixin`).
"""

from __future__ import annotations

import torch
from diffusers.utils import logging


logger = logging.get_logger(__name__)

MAX_TOKENIZER_LENGTH = 4096  # a tokenizer without model_max_length reports ~1e30


def as_list(x) -> list | None:
    return [x] if isinstance(x, str) else x


def check_negative(prompt, negative_prompt, prompt_embeds, negative_prompt_embeds) -> None:
    if negative_prompt is not None:
        if negative_prompt_embeds is not None:
            raise ValueError("pass either negative_prompt or negative_prompt_embeds, not both")
        if not isinstance(negative_prompt, (str, list)) or not all(
            isinstance(n, str) for n in as_list(negative_prompt)
        ):
            raise ValueError(f"negative_prompt must be a string or a list of strings, got {negative_prompt!r}")
        if isinstance(negative_prompt, list):
            n_prompts = len(as_list(prompt)) if prompt is not None else prompt_embeds.shape[0]
            if len(negative_prompt) != n_prompts:
                raise ValueError(
                    f"negative_prompt has {len(negative_prompt)} entries but prompt has {n_prompts}; "
                    "pass one negative prompt per prompt, or a single string for all"
                )
    if prompt_embeds is not None and negative_prompt_embeds is not None:
        if prompt_embeds.shape != negative_prompt_embeds.shape:
            raise ValueError(
                f"prompt_embeds and negative_prompt_embeds must have the same shape, got "
                f"{tuple(prompt_embeds.shape)} and {tuple(negative_prompt_embeds.shape)}"
            )


def _tokens(pipe, texts: list[str], max_length: int):
    convert = getattr(pipe, "maybe_convert_prompt", None)
    if convert is not None:  # textual inversion: "<cat-toy>" -> its learned tokens
        texts = convert(texts, pipe.tokenizer)
    return pipe.tokenizer(texts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")


def _hidden_states(pipe, tokens, device, clip_skip: int | None = None) -> torch.Tensor:
    encoder = pipe.text_encoder
    mask = tokens.attention_mask.to(device) if getattr(encoder.config, "use_attention_mask", False) else None
    if clip_skip is None:
        return encoder(tokens.input_ids.to(device), attention_mask=mask)[0]
    hidden = encoder(tokens.input_ids.to(device), attention_mask=mask, output_hidden_states=True)[-1]
    states = hidden[-(clip_skip + 1)]
    # CLIP's final layer norm (transformers 5 keeps it on the model, 4 on model.text_model); BERT has none
    final_norm = getattr(encoder, "final_layer_norm", None) or getattr(
        getattr(encoder, "text_model", None), "final_layer_norm", None
    )
    return final_norm(states) if final_norm is not None else states


def _negatives(prompt, negative_prompt, batch_size: int) -> list[str]:
    if negative_prompt is None:
        return [""] * batch_size
    if isinstance(negative_prompt, str):
        return [negative_prompt] * batch_size
    if len(negative_prompt) != batch_size:
        raise ValueError(
            f"negative_prompt has {len(negative_prompt)} entries but prompt has {batch_size}; "
            "pass one negative prompt per prompt, or a single string for all"
        )
    return list(negative_prompt)


def encode_prompt(
    pipe,
    prompt,
    device,
    num_per_prompt: int = 1,
    do_classifier_free_guidance: bool = True,
    negative_prompt=None,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
    clip_skip: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """([B * num_per_prompt, T, D], same or None) for a pipeline with `tokenizer` and `text_encoder`."""
    batch_size = len(as_list(prompt)) if prompt is not None else prompt_embeds.shape[0]
    max_length = pipe.tokenizer.model_max_length if pipe.tokenizer is not None else None
    if prompt_embeds is None or (do_classifier_free_guidance and negative_prompt_embeds is None):
        if pipe.text_encoder is None or pipe.tokenizer is None:
            raise ValueError("this pipeline has no text encoder: pass prompt_embeds and negative_prompt_embeds")
        if max_length > MAX_TOKENIZER_LENGTH:
            raise ValueError(f"the tokenizer's model_max_length is {max_length}; set it in tokenizer_config.json")
    if prompt_embeds is None:
        prompts = as_list(prompt)
        tokens = _tokens(pipe, prompts, max_length)
        if len(pipe.tokenizer(prompts, padding="longest", truncation=False).input_ids[0]) > max_length:
            logger.warning(f"prompt truncated to the text encoder's {max_length} tokens")
        prompt_embeds = _hidden_states(pipe, tokens, device, clip_skip)
    if pipe.text_encoder is not None:
        dtype = pipe.text_encoder.dtype
    elif getattr(pipe, "unet", None) is not None:
        dtype = pipe.unet.dtype
    else:
        dtype = prompt_embeds.dtype
    prompt_embeds = prompt_embeds.to(dtype=dtype, device=device).repeat_interleave(num_per_prompt, dim=0)
    if not do_classifier_free_guidance:
        return prompt_embeds, negative_prompt_embeds
    if negative_prompt_embeds is None:
        tokens = _tokens(pipe, _negatives(prompt, negative_prompt, batch_size), prompt_embeds.shape[1])
        negative_prompt_embeds = _hidden_states(pipe, tokens, device)
    negative_prompt_embeds = negative_prompt_embeds.to(dtype=dtype, device=device)
    return prompt_embeds, negative_prompt_embeds.repeat_interleave(num_per_prompt, dim=0)
