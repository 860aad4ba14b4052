# Copyright 2026 jzi_ros contributors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
The zooming policy: a small causal transformer over ``[g, m0, a0, m1, ..., m_{D-1}]``.

Pre-norm blocks with RMSNorm, SwiGLU feed-forward and rotary position embeddings; attention is
``F.scaled_dot_product_attention``. The KV cache is a tuple of ``(key, value)`` tensor pairs,
one per layer, each ``[B, heads, T, head_dim]``, so incremental decoding can be traced and
exported without Python objects in the graph.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from jzi_ros.model.config import ModelConfig

KVCache = tuple[tuple[torch.Tensor, torch.Tensor], ...]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class Rotary(nn.Module):
    """Rotary position embedding tables for positions 0..max_len-1."""

    def __init__(self, head_dim: int, max_len: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        # not saved: derived from the config, so checkpoints hold only learned weights
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def table(self, start: int, length: int, dtype: torch.dtype
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(cos, sin)`` ``[length, hd]`` for positions ``start .. start+length-1``."""
        return (self.cos[start:start + length].to(dtype),
                self.sin[start:start + length].to(dtype))

    def forward(self, x: torch.Tensor, start: int | torch.Tensor) -> torch.Tensor:
        """Rotate ``x [..., T, hd]`` whose first token sits at position ``start``."""
        cos, sin = self.table(start, x.shape[-2], x.dtype)
        return x * cos + _rotate_half(x) * sin


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.gate_up = nn.Linear(width, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        out = self.down(F.silu(gate) * up)
        return self.dropout(out) if self.training else out


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_hidden: int, dropout: float,
                 rotary: Rotary) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.RMSNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.norm2 = nn.RMSNorm(width)
        self.mlp = SwiGLU(width, mlp_hidden, dropout)
        self.resid_dropout = nn.Dropout(dropout)
        # one shared table registered in every block (non-persistent: not in the state dict)
        self.rotary = rotary

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None, last_only: bool = False
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """
        Run the block on new tokens ``x [B, T, C]`` after the cached ``past`` (or none).

        ``rope`` (the rotary table of the new positions) and ``mask`` (new tokens x all
        tokens, causal) are the same for every block of a step, so the caller may build them
        once. ``last_only``: return only the last token's output (the one a head reads); the
        keys and values of every new token are still computed and returned for the cache.
        """
        batch, length, width = x.shape
        qkv = (self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, -1)
               .permute(2, 0, 3, 1, 4))
        start = 0 if past is None else past[0].shape[2]
        cos, sin = rope if rope is not None else self.rotary.table(start, length, x.dtype)
        qk = qkv[:2]  # rotate queries and keys in one go
        qk = qk * cos + _rotate_half(qk) * sin
        q, k, v = qk[0], qk[1], qkv[2]
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        causal = False
        if last_only:  # the last token sees every token: no mask
            q, x, mask = q[:, :, -1:], x[:, -1:], None
        elif past is None:
            mask, causal = None, True
        elif mask is None:
            mask = causal_mask(length, k.shape[2], x.device)
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0)
        attn = self.proj(attn.transpose(1, 2).reshape(batch, -1, width))
        x = x + (self.resid_dropout(attn) if self.training else attn)
        x = x + self.mlp(self.norm2(x))
        return x, (k, v)


def causal_mask(length: int, total: int, device: torch.device) -> torch.Tensor:
    """
    Return the attention mask of ``length`` new tokens after ``total - length`` cached ones.

    New token i (absolute position total-length+i) sees every cached token and new ones <= i.
    """
    mask = torch.ones(length, total, dtype=torch.bool, device=device)
    return mask.tril(diagonal=total - length)


class ZoomDecoder(nn.Module):
    """Token embedding, causal blocks and the K*K-way head read at map-view tokens."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width, dec = config.decoder_width, config.decoder
        encoder_width = config.encoder.hidden_size
        self.num_actions = config.num_actions
        self.depth = config.depth
        # separate projections let ground and map vectors live in different sub-spaces
        self.ground_proj = nn.Linear(encoder_width, width)
        self.view_proj = nn.Linear(encoder_width, width)
        self.action_embed = nn.Embedding(config.num_actions, width)
        self.rotary = Rotary(width // dec.heads, 2 * config.depth, dec.rope_base)
        mlp_hidden = max(8, int(round(dec.mlp_ratio * width * 2 / 3 / 8)) * 8)
        self.blocks = nn.ModuleList(
            Block(width, dec.heads, mlp_hidden, dec.dropout, self.rotary)
            for _ in range(dec.layers))
        self.norm = nn.RMSNorm(width)
        self.head = nn.Linear(width, config.num_actions)
        self.embed_dropout = nn.Dropout(dec.dropout)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def _run(self, tokens: torch.Tensor, cache: KVCache | None, last_only: bool = False
             ) -> tuple[torch.Tensor, KVCache]:
        x = self.embed_dropout(tokens) if self.training else tokens
        length = x.shape[1]
        start = 0 if cache is None else cache[0][0].shape[2]
        rope = self.rotary.table(start, length, x.dtype)
        mask = None if cache is None else causal_mask(length, start + length, x.device)
        new_cache = []
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            x, kv = block(x, None if cache is None else cache[index], rope, mask,
                          last_only and index == last)
            new_cache.append(kv)
        return self.norm(x), tuple(new_cache)

    def forward(self, ground: torch.Tensor, views: torch.Tensor,
                actions: torch.Tensor) -> torch.Tensor:
        """
        Teacher forcing: ``ground [B,C]``, ``views [B,L,C]``, ``actions [B,L-1]`` -> logits.

        The logits are ``[B, L, K*K]`` (logits at m_t depend only on g, m_0..m_t, a_0..a_{t-1}).
        """
        batch, length = views.shape[:2]
        g = self.ground_proj(ground)[:, None]
        m = self.view_proj(views)
        if length > 1:
            a = self.action_embed(actions)
            pairs = torch.stack((m[:, :-1], a), dim=2).reshape(batch, 2 * (length - 1), -1)
            tokens = torch.cat((g, pairs, m[:, -1:]), dim=1)
        else:
            tokens = torch.cat((g, m), dim=1)
        hidden, _ = self._run(tokens, None)
        return self.head(hidden[:, 1::2])

    def start(self, ground: torch.Tensor, root_view: torch.Tensor
              ) -> tuple[torch.Tensor, KVCache]:
        tokens = torch.stack((self.ground_proj(ground), self.view_proj(root_view)), dim=1)
        hidden, cache = self._run(tokens, None, last_only=True)
        return self.head(hidden[:, -1]), cache

    def advance(self, actions: torch.Tensor, next_view: torch.Tensor, cache: KVCache
                ) -> tuple[torch.Tensor, KVCache]:
        tokens = torch.stack((self.action_embed(actions), self.view_proj(next_view)), dim=1)
        hidden, cache = self._run(tokens, cache, last_only=True)
        return self.head(hidden[:, -1]), cache
