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
Beam search down the cell tree with the decoder's KV cache.

Per frame only the ground token is new: every map view is a row of the map's precomputed
embedding table, so step t gathers the views of the current beam prefixes from the table and
feeds one (action, view) token pair to the cached decoder. The whole search has static shapes
(N frames x B beams x D steps, unrolled), which is what lets it be captured in one CUDA graph,
compiled, or exported to ONNX/TensorRT as a single fixed-length graph.

Beam width 1 is exactly the paper's greedy decoding (argmax at every step);
:func:`greedy_reference` re-runs the uncached ``forward`` on the growing prefix, the paper's
way, and is what the tests compare against.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from jzi_ros.errors import JziError
from jzi_ros.geo import CellTree

# Log-probability of padding beams (fewer distinct paths than beams at the first steps).
# Finite so that exported graphs and fp16 engines never see inf - inf.
PAD_LOG_PROB = -1.0e9


def effective_beam_width(beam_width: int, grid: int, depth: int) -> int:
    """Return the beam width actually used: at least 1, at most the number of terminal cells."""
    if int(beam_width) != beam_width or beam_width < 1:
        raise JziError(f"beam_width must be an integer >= 1, got {beam_width!r}")
    return int(min(int(beam_width), (grid * grid) ** depth))


class BeamSearch(nn.Module):
    """
    Fixed-length beam search as a module.

    ``(ground [N, C], view_table [V, C]) -> (paths long [N, B, D], log_probs float32 [N, B])``,
    beams sorted best first.

    ``model`` must provide ``start``, ``advance`` and ``reorder_cache`` (see ZoomModel).

    With ``with_steps`` the search also returns what every step saw (the measurement a
    temporal filter needs, :class:`BeamSteps`): ``root_lp [N, K]`` (first step's child
    log-probabilities), ``prefix_index [N, D-1, B]`` (the beam's cells at levels 1..D-1 as
    indices within their level), ``prefix_lp [N, D-1, B]`` (their path log-probabilities;
    padding beams carry :data:`PAD_LOG_PROB`) and ``step_lp [N, D-1, B, K]`` (their
    children's log-probabilities).
    """

    def __init__(self, model: nn.Module, grid: int, depth: int, beam_width: int,
                 with_steps: bool = False, seeds: int = 0, seed_level: int = 1) -> None:
        super().__init__()
        self.model = model
        self.with_steps = bool(with_steps) or seeds > 0
        self.num_seeds = int(seeds)
        self.seed_level = int(seed_level)
        if self.num_seeds and not 1 <= self.seed_level < depth:
            raise JziError(f"seed_level must be in 1..{depth - 1} (a prefix the zoom expands "
                           f"further), got {seed_level!r}")
        self.num_actions = int(grid) * int(grid)
        self.depth = int(depth)
        self.beam_width = effective_beam_width(beam_width, grid, depth)
        # first row of each level in the flat view table (level 0 = root = row 0)
        offsets, total = [], 0
        for level in range(self.depth):
            offsets.append(total)
            total += self.num_actions ** level
        self.level_offsets = tuple(offsets)
        self.num_views = total

    def extra_repr(self) -> str:
        # in repr(): what a compiled search depends on besides weights (its cache key)
        return (f"actions={self.num_actions}, depth={self.depth}, beam_width={self.beam_width}"
                f", with_steps={self.with_steps}, seeds={self.num_seeds}, "
                f"seed_level={self.seed_level}")

    def forward(self, ground: torch.Tensor, view_table: torch.Tensor,
                seeds: torch.Tensor | None = None) -> tuple:
        if self.num_seeds:
            if seeds is None or tuple(seeds.shape) != (ground.shape[0], self.num_seeds):
                raise JziError(f"this search takes seeds [N, {self.num_seeds}], got "
                               f"{None if seeds is None else list(seeds.shape)}")
            return self._seeded(ground, view_table, seeds)
        n, width = ground.shape
        beams, k = self.beam_width, self.num_actions
        table = view_table.to(ground.dtype)
        frames = torch.arange(n, device=ground.device)

        logits, cache = self.model.start(ground, table[0].expand(n, width))
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        root_lp, prefixes, prefix_lps, step_lps = log_probs, [], [], []
        first = min(beams, k)
        beam_lp, actions = log_probs.topk(first, dim=-1)
        if first < beams:  # more beams than children of the root: pad with impossible beams
            beam_lp = torch.cat([beam_lp, beam_lp.new_full((n, beams - first), PAD_LOG_PROB)], 1)
            actions = torch.cat([actions, actions.new_zeros((n, beams - first))], 1)
        paths = actions.unsqueeze(-1)
        level_index = actions  # index of the chosen cell within its level
        if self.depth > 1:
            cache = self.model.reorder_cache(cache, frames.repeat_interleave(beams))

        for step in range(1, self.depth):
            views = table[self.level_offsets[step] + level_index.reshape(-1)]
            logits, cache = self.model.advance(actions.reshape(-1), views, cache)
            step_lp = torch.log_softmax(logits.float(), dim=-1).reshape(n, beams, k)
            if self.with_steps:
                prefixes.append(level_index)
                prefix_lps.append(beam_lp)
                step_lps.append(step_lp)
            total = (beam_lp.unsqueeze(-1) + step_lp).reshape(n, beams * k)
            beam_lp, flat = total.topk(beams, dim=-1)
            parent = torch.div(flat, k, rounding_mode="floor")
            actions = flat - parent * k
            paths = torch.cat([paths.gather(1, parent.unsqueeze(-1).expand(-1, -1, step)),
                               actions.unsqueeze(-1)], dim=-1)
            level_index = level_index.gather(1, parent) * k + actions
            if step < self.depth - 1:  # the last step's cache is never read again
                cache = self.model.reorder_cache(cache, (frames.unsqueeze(1) * beams
                                                         + parent).reshape(-1))
        if not self.with_steps:
            return paths, beam_lp
        if not step_lps:  # depth 1: the root's children are the whole measurement
            prefixes = [level_index.new_zeros((n, beams))]
            prefix_lps = [beam_lp.new_full((n, beams), PAD_LOG_PROB)]
            step_lps = [beam_lp.new_zeros((n, beams, k))]
        return (paths, beam_lp, root_lp, torch.stack(prefixes, 1), torch.stack(prefix_lps, 1),
                torch.stack(step_lps, 1))

    def _seeded(self, ground: torch.Tensor, view_table: torch.Tensor, seeds: torch.Tensor
                ) -> tuple:
        """
        Search as :meth:`forward` plus a second track of beams from forced prefixes (seeds).

        ``seeds [N, S]``: cells at ``seed_level`` (index within the level; -1: none). The
        model's own B beams run exactly as without seeds (same paths and log-probs, returned
        as usual). S more rows follow the seeds' actions down to ``seed_level``, scored with
        the model's log-probabilities of those actions, then keep the S best of their own
        children at every further step. A seed the model's beam already holds at that level
        is dropped (the two tracks expand disjoint subtrees). Only the measurement
        (``prefix_index``/``prefix_lp``/``step_lp``, B + S columns) sees the seeded rows: a
        temporal filter gets the model's fine-grained probabilities where its prior is even
        when the model's own first steps went elsewhere.
        """
        n, width = ground.shape
        beams, k, seeded = self.beam_width, self.num_actions, self.num_seeds
        rows, level = beams + seeded, self.seed_level
        table = view_table.to(ground.dtype)
        frames = torch.arange(n, device=ground.device)
        seeds = seeds.to(torch.long)
        valid = seeds >= 0
        # a seed repeated within its row counts once
        same = (seeds.unsqueeze(2) == seeds.unsqueeze(1)) & valid.unsqueeze(1)
        valid = valid & ~torch.tril(same, diagonal=-1).any(2)
        cells = seeds.clamp(min=0)
        digits = [torch.div(cells, k ** (level - 1 - t), rounding_mode="floor") % k
                  for t in range(level)]  # the seeds' actions, most significant first

        logits, cache = self.model.start(ground, table[0].expand(n, width))
        root_lp = torch.log_softmax(logits.float(), dim=-1)
        first = min(beams, k)
        own_lp, own_actions = root_lp.topk(first, dim=-1)
        if first < beams:
            own_lp = torch.cat([own_lp, own_lp.new_full((n, beams - first), PAD_LOG_PROB)], 1)
            own_actions = torch.cat([own_actions, own_actions.new_zeros((n, beams - first))], 1)
        own_paths = own_actions.unsqueeze(-1)
        seed_lp = root_lp.gather(1, digits[0])
        actions = torch.cat([own_actions, digits[0]], 1)
        beam_lp = torch.cat([own_lp, seed_lp], 1)
        level_index = actions

        def drop_known(beam_lp: torch.Tensor, level_index: torch.Tensor) -> torch.Tensor:
            own = level_index[:, :beams]
            own_valid = beam_lp[:, :beams] > PAD_LOG_PROB / 2
            known = ((level_index[:, beams:].unsqueeze(2) == own.unsqueeze(1))
                     & own_valid.unsqueeze(1)).any(2)
            keep = valid & ~known
            return torch.cat([beam_lp[:, :beams],
                              torch.where(keep, beam_lp[:, beams:],
                                          beam_lp.new_full((n, seeded), PAD_LOG_PROB))], 1)

        beam_lp = torch.cat([beam_lp[:, :beams], torch.where(
            valid, beam_lp[:, beams:], beam_lp.new_full((n, seeded), PAD_LOG_PROB))], 1)
        if level == 1:
            beam_lp = drop_known(beam_lp, level_index)
        cache = self.model.reorder_cache(cache, frames.repeat_interleave(rows))
        prefixes, prefix_lps, step_lps = [], [], []
        for step in range(1, self.depth):
            views = table[self.level_offsets[step] + level_index.reshape(-1)]
            logits, cache = self.model.advance(actions.reshape(-1), views, cache)
            step_lp = torch.log_softmax(logits.float(), dim=-1).reshape(n, rows, k)
            prefixes.append(level_index)
            prefix_lps.append(beam_lp)
            step_lps.append(step_lp)
            if step == self.depth - 1:
                break
            # the model's own track, exactly as without seeds
            total = (beam_lp[:, :beams].unsqueeze(-1) + step_lp[:, :beams]).reshape(n, -1)
            own_lp, flat = total.topk(beams, dim=-1)
            own_parent = torch.div(flat, k, rounding_mode="floor")
            own_actions = flat - own_parent * k
            own_paths = torch.cat([own_paths.gather(
                1, own_parent.unsqueeze(-1).expand(-1, -1, step)),
                own_actions.unsqueeze(-1)], dim=-1)
            # the seeded track: forced down to the seed level, then its own S best
            if step < level:
                seed_parent = torch.arange(seeded, device=ground.device).expand(n, -1)
                seed_actions = digits[step]
                forced = step_lp[:, beams:].gather(2, seed_actions.unsqueeze(-1))[..., 0]
                seed_lp = beam_lp[:, beams:] + forced
            else:
                total = (beam_lp[:, beams:].unsqueeze(-1) + step_lp[:, beams:]).reshape(n, -1)
                seed_lp, flat = total.topk(seeded, dim=-1)
                seed_parent = torch.div(flat, k, rounding_mode="floor")
                seed_actions = flat - seed_parent * k
            parent = torch.cat([own_parent, beams + seed_parent], 1)
            actions = torch.cat([own_actions, seed_actions], 1)
            beam_lp = torch.cat([own_lp, seed_lp.clamp(min=PAD_LOG_PROB)], 1)
            level_index = level_index.gather(1, parent) * k + actions
            if step + 1 == level:
                beam_lp = drop_known(beam_lp, level_index)
            cache = self.model.reorder_cache(cache, (frames.unsqueeze(1) * rows
                                                     + parent).reshape(-1))
        if self.depth > 1:  # the model's track takes its last step as without seeds
            total = (beam_lp[:, :beams].unsqueeze(-1) + step_lp[:, :beams]).reshape(n, -1)
            own_lp, flat = total.topk(beams, dim=-1)
            own_parent = torch.div(flat, k, rounding_mode="floor")
            own_paths = torch.cat([own_paths.gather(
                1, own_parent.unsqueeze(-1).expand(-1, -1, self.depth - 1)),
                (flat - own_parent * k).unsqueeze(-1)], dim=-1)
        return (own_paths, own_lp, root_lp, torch.stack(prefixes, 1),
                torch.stack(prefix_lps, 1), torch.stack(step_lps, 1))


@dataclass(frozen=True)
class BeamSteps:
    """
    What one frame's zoom saw at every step, as numpy arrays (see :class:`BeamSearch`).

    ``root_lp [K]``, ``prefix_index [D-1, B]``, ``prefix_lp [D-1, B]``, ``step_lp [D-1, B, K]``.
    A prefix whose ``prefix_lp`` is below ``PAD_LOG_PROB / 2`` is a padding beam.
    """

    root_lp: np.ndarray
    prefix_index: np.ndarray
    prefix_lp: np.ndarray
    step_lp: np.ndarray

    @classmethod
    def split(cls, root_lp, prefix_index, prefix_lp, step_lp) -> list["BeamSteps"]:
        """Batched tensors/arrays ``[N, ...]`` -> one BeamSteps per frame."""
        arrays = [np.asarray(a.cpu().numpy() if isinstance(a, torch.Tensor) else a)
                  for a in (root_lp, prefix_index, prefix_lp, step_lp)]
        return [cls(*(a[i] for a in arrays)) for i in range(arrays[0].shape[0])]


@dataclass(frozen=True)
class Seeds:
    """
    Prefixes a prior supports, to start a seeded beam from (:class:`BeamSearch` ``seeds``).

    ``cells`` int ``[S]``: cells at ``level`` (1..D-1) as indices within that level (the
    base-K number of their actions); -1 marks an unused slot (S stays fixed so a traced or
    exported graph keeps its shapes).
    """

    level: int
    cells: np.ndarray


def check_view_table(view_table: torch.Tensor, tree: CellTree, embed_dim: int) -> None:
    if view_table.ndim != 2 or tuple(view_table.shape) != (tree.num_views, embed_dim):
        raise JziError(f"view embedding table has shape {list(view_table.shape)}, expected "
                       f"[{tree.num_views}, {embed_dim}] (num_views x model width)")


@torch.no_grad()
def beam_search(model: nn.Module, ground_tokens: torch.Tensor, view_table: torch.Tensor,
                tree: CellTree, beam_width: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Top ``beam_width`` paths per frame with their log-probabilities.

    ground_tokens: [N, C] (``model.encode_ground`` output); view_table: [num_views, C] on the
    same device. Returns ``(paths long [N, B, D], log_probs float32 [N, B])``, best first.
    ``beam_width=1`` is greedy argmax decoding.
    """
    if ground_tokens.ndim != 2:
        raise JziError(f"ground tokens must be [N, C], got shape {list(ground_tokens.shape)}")
    check_view_table(view_table, tree, ground_tokens.shape[1])
    search = BeamSearch(model, tree.grid, tree.depth, beam_width)
    return search(ground_tokens, view_table)


ViewFn = Callable[[np.ndarray], torch.Tensor]


@torch.no_grad()
def greedy_reference(model: nn.Module, ground_tokens: torch.Tensor, view_fn: ViewFn,
                     depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Decode greedily as the paper does.

    At step t get the current view's token from ``view_fn(prefixes int [N, t]) -> [N, C]`` (a
    table lookup, or re-encoding the rendered view as the paper does), then re-run the uncached
    ``forward`` on the whole prefix and take the argmax.

    Returns ``(paths long [N, D], log_probs float32 [N])``; slow by design (reference/bench).
    """
    n = ground_tokens.shape[0]
    device = ground_tokens.device
    actions = torch.zeros((n, 0), dtype=torch.long, device=device)
    views: list[torch.Tensor] = []
    total = torch.zeros(n, dtype=torch.float32, device=device)
    for step in range(depth):
        views.append(view_fn(actions.cpu().numpy()).to(device=device, dtype=ground_tokens.dtype))
        logits = model(ground_tokens, torch.stack(views, dim=1), actions)[:, -1]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        best = log_probs.argmax(dim=-1)
        total += log_probs.gather(1, best.unsqueeze(1)).squeeze(1)
        actions = torch.cat([actions, best.unsqueeze(1)], dim=1)
    return actions, total


def table_view_fn(view_table: torch.Tensor, tree: CellTree) -> ViewFn:
    """Return a :data:`ViewFn` that looks prefixes up in the cached embedding table."""
    def lookup(prefixes: np.ndarray) -> torch.Tensor:
        index = torch.as_tensor(tree.view_indices(prefixes), device=view_table.device)
        return view_table[index]
    return lookup


@torch.no_grad()
def path_log_probs(model: nn.Module, ground_tokens: torch.Tensor, view_table: torch.Tensor,
                   tree: CellTree, paths: torch.Tensor) -> torch.Tensor:
    """Teacher-forced log-probability of given full paths: [N, P, D] -> [N, P] (uncached)."""
    n, count, depth = paths.shape
    flat = paths.reshape(n * count, depth)
    prefixes = flat.cpu().numpy()
    index = np.stack([tree.view_indices(prefixes[:, :t]) for t in range(depth)], axis=1)
    views = view_table[torch.as_tensor(index, device=view_table.device)]
    ground = ground_tokens.repeat_interleave(count, dim=0)
    logits = model(ground, views.to(ground.dtype), flat[:, :-1])
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return log_probs.gather(2, flat.unsqueeze(-1)).squeeze(-1).sum(-1).reshape(n, count)
