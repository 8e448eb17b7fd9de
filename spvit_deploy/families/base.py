"""What differs between model families, behind one small interface.

A `ModelFamily` knows, for its kind of timm model: which models it accepts, where the
transformer blocks are and their geometry (`ModelDims`), how a block's attention and FFN are
wrapped for the search (supernet) and rebuilt as plain layers, and the constants of the method
(head-mixing temperature `alpha`, the kernel position of each head-mixing column, what a skip
block computes after fine-tuning). The stages (supernet, derive, materialize, macs, verify,
export, import-official) call the family and never branch on it; a new family is one module
that subclasses `ModelFamily` and is listed in `families/__init__.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


CONV_KERNEL = {"conv3x3": 3, "conv1x1": 1}  # conv op -> kernel size (the spec's ops)


@dataclass(frozen=True)
class BlockGeom:
    """The shape facts of one transformer block that MAC counting and specs need.

    `tokens` counts every token the block sees (patches plus prefix tokens such as a class token);
    `span` is how many tokens each query attends to (all of them in a ViT, one window in Swin);
    `prefix` the tokens that are not on the patch grid (passed through by conv and skip ops).
    """

    dim: int
    heads: int
    grid: tuple[int, int]
    prefix: int
    span: int
    dense_width: int
    qkv_bias: bool
    rel_bias_params: int = 0  # learned relative position bias entries of the MSA (Swin)

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def tokens(self) -> int:
        return self.num_patches + self.prefix

    @property
    def norm_params(self) -> int:
        return 4 * self.dim  # LN1 and LN2, weight and bias


@dataclass(frozen=True)
class ModelDims:
    """A model's blocks in order, plus the MACs and parameters no gate can remove."""

    family: str
    blocks: tuple[BlockGeom, ...]
    fixed_macs: int  # patch embedding, patch merging, classifier
    fixed_params: int  # everything outside the blocks' attention and FFN (block norms included)
    num_classes: int
    in_chans: int
    img_size: int

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def mlp_hidden(self) -> tuple[int, ...]:
        return tuple(b.dense_width for b in self.blocks)

    @property
    def embed_dim(self) -> int:
        return self.blocks[0].dim


class ModelFamily:
    """One family of timm models (see the module docstring). Subclasses fill in every method."""

    name: str = ""
    alpha: float = 0.01  # head-mixing temperature A = softmax(P / alpha)
    positions: tuple[int, ...] = tuple(range(9))  # kernel position (row + 3*col) of each mixing column
    skip_branch: str = "zero"  # what a skip block's branch returns in published fine-tuned models
    conv_scope: str = ""  # where the conv ops run, recorded in the spec when not empty
    # "module:function" importing the family's official fine-tuned checkpoints (see official.py)
    official_importer: str = ""

    # -- recognising models ---------------------------------------------------------------
    def accepts(self, model: nn.Module) -> bool:
        raise NotImplementedError

    def check_supported(self, model: nn.Module, name: str) -> None:
        """Raise a one-line `SpvitError` unless every block has the structure this family wraps."""
        raise NotImplementedError

    def checkpoint_filter(self, state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
        """Map a dense checkpoint in the family's published formats to timm's keys."""
        raise NotImplementedError

    # -- geometry -------------------------------------------------------------------------
    def block_paths(self, model: nn.Module) -> list[str]:
        """State-dict prefixes of the blocks, in spec order ('blocks.3', 'layers.2.blocks.1')."""
        raise NotImplementedError

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return [model.get_submodule(p) for p in self.block_paths(model)]

    def dims(self, model: nn.Module) -> ModelDims:
        raise NotImplementedError

    def img_size(self, model: nn.Module) -> int:
        return int(model.patch_embed.img_size[0])

    # -- stages ---------------------------------------------------------------------------
    def to_supernet(self, model: nn.Module, alpha: float, gate_init: float) -> nn.Module:
        """Wrap every block in place so that each has `.attn` (a `SinglePathAttention`) and
        `.mlp` (a `GatedMlp`); with every gate on it computes the dense model."""
        raise NotImplementedError

    def build_plain(self, model: nn.Module, spec: Any, device: Any) -> nn.Module:
        """Rebuild the fresh dense `model` as the plain network `spec` describes, in place."""
        raise NotImplementedError

    def plain_block_state(self, block: nn.Module, bspec: Any, skip_branch: str, prefix: str) -> dict[str, torch.Tensor]:
        """The plain block's weights (keys start with `prefix`) from a supernet block."""
        raise NotImplementedError
