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
Training the retrieval baseline: symmetric InfoNCE between frames and their cells' map views.

The comparison the paper makes has to be run on the user's own data to mean anything, so this
trainer takes exactly what ``jzi train`` takes (a :class:`TrainConfig`: a labelled manifest
or a ``render:`` block of rasters, the map, the encoder config, the budget) and reuses its
data path (datasets, augmentations, the preprocessing of :mod:`jzi_ros.model.preprocess`,
collation of the batch's unique map views). A sample's positive is the map view of the
finest view level (the last of its D views: the cell of side ``size / K^(D-1)`` it lies in);
the other samples' views in the batch are its negatives, except views it shares with them.

Single process (no DDP) and no resume: the baseline is small next to the zoom's training.
Writes ``last.safetensors`` after every epoch, ``best.safetensors`` (highest validation
recall@1 of the view search, else the last), ``metrics.jsonl`` and ``summary.json``.
"""
from __future__ import annotations

from pathlib import Path
import time
from typing import Callable

import torch
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from jzi_ros.errors import JziError
from jzi_ros.files import write_json
from jzi_ros.maps.pyramid import MapPyramid
from jzi_ros.model.retrieval import (embed_view_rows, finest_view_rows, info_nce,
                                     RetrievalConfig, RetrievalModel, save_retrieval)
from jzi_ros.training.config import TrainConfig
from jzi_ros.training.data import Collate, training_dataset, ZoomDataset
from jzi_ros.training.ddp import pick_device
# the zoom trainer's reading of the manifest / render spec and its history file, shared
from jzi_ros.training.loop import training_samples, write_history
from jzi_ros.training.optim import (amp_settings, fit_schedule_to_budget, lr_factor,
                                    make_optimizer, out_of_budget)

LAST, BEST = "last.safetensors", "best.safetensors"
METRICS_LOG, SUMMARY = "metrics.jsonl", "summary.json"
RECALL_K = (1, 5)


class FinestViewCollate(Collate):
    """:class:`Collate` restricted to each sample's finest-level view: its positive."""

    def __call__(self, items: list[dict]) -> dict:
        batch = super().__call__([{**item, "view_rows": item["view_rows"][-1:]}
                                  for item in items])
        batch["view_rows"] = batch["view_rows"][:, 0]
        if "view_slots" in batch:
            batch["view_slots"] = batch["view_slots"].reshape(-1)
        return batch


@torch.no_grad()
def validate(model: RetrievalModel, pyramid: MapPyramid, loader: DataLoader,
             device: torch.device, batch_size: int, progress: bool = False) -> dict:
    """Return recall@k of the flat view search and the validation InfoNCE over ``loader``."""
    rows = finest_view_rows(pyramid.tree)
    table = embed_view_rows(model, pyramid, rows, batch_size, device)
    was_training = model.training
    model.eval()
    hits = dict.fromkeys(RECALL_K, 0)
    count, loss_sum = 0, 0.0
    for batch in tqdm(loader, desc="validate", unit="batch", disable=not progress):
        frames = model.encode_frames(batch["ground"].to(device))
        truth = batch["view_rows"].to(device) - int(rows[0])
        ranked = (frames @ table.T).topk(min(max(RECALL_K), len(rows)), dim=1).indices
        for k in RECALL_K:
            hits[k] += int((ranked[:, :k] == truth[:, None]).any(dim=1).sum())
        loss_sum += float(info_nce(frames, table[truth], truth, model.scale())) * len(truth)
        count += len(truth)
    model.train(was_training)
    return {**{f"val_recall@{k}": hits[k] / max(count, 1) for k in RECALL_K},
            "val_loss": loss_sum / max(count, 1), "val_samples": count}


def train_retrieval(config: TrainConfig, embed_dim: int = 128,
                    initial_temperature: float = 0.07, progress: bool = True,
                    log: Callable[[str], None] = print) -> dict:
    """
    Train a retrieval model on ``config``'s data and map; write it to ``config.out``.

    ``config`` is a ``jzi train`` config: manifest / render block, map, out, model preset and
    overrides (the decoder's are unused), epochs, batch size, lr, weight decay, warm-up, grad
    clip, amp, device, workers, seed, val_every, augment and the budgets (max_steps,
    max_steps_per_epoch, max_minutes). Returns the summary (also written to summary.json).
    """
    started = time.time()
    out = Path(config.out)
    if config.init:
        raise JziError(f"training config: init={config.init} starts a zoom model from a "
                       f"checkpoint; jzi train-retrieval trains its encoder from the config's "
                       f"model.encoder (pretrained DINOv2 weights: model.encoder.weights); "
                       f"drop init")
    if (out / LAST).exists():
        raise JziError(f"output {out} already holds a retrieval training run ({LAST}); choose "
                       f"another 'out' (there is no --resume for the retrieval baseline)")
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    pyramid = MapPyramid.open(config.map)
    tree = pyramid.tree
    model_config = config.model_config()
    model_config.grid, model_config.depth = tree.grid, tree.depth
    model = RetrievalModel(RetrievalConfig(model_config, embed_dim, initial_temperature))
    model.to(device)
    render = config.render_spec()
    labeled, train_set, val_set = training_samples(config, pyramid, log, render)
    dataset = training_dataset(config, train_set, tree, model_config, render)
    loader = DataLoader(dataset, config.batch_size,
                        sampler=RandomSampler(dataset, generator=torch.Generator().manual_seed(
                            config.seed)),
                        num_workers=config.num_workers, drop_last=len(dataset)
                        >= 2 * config.batch_size,
                        collate_fn=FinestViewCollate(pyramid.path, model_config, True,
                                                     config.augment, config.seed))
    val_loader = DataLoader(ZoomDataset(val_set, tree, model_config, augment=False),
                            config.val_batch_size, shuffle=False,
                            num_workers=config.num_workers,
                            collate_fn=FinestViewCollate(pyramid.path, model_config, False,
                                                         False))
    views = len(finest_view_rows(tree))
    log(f"retrieval: {len(dataset)} training samples per epoch, {len(val_set)} validation; "
        f"{views} map views of {tree.cell_side(tree.depth - 1):.1f} m (level "
        f"{tree.depth - 1}) to retrieve from; encoder {model_config.encoder.kind}, "
        f"embeddings {embed_dim}-d, device {device}")
    optimizer = make_optimizer(model, config, device)
    autocast, use_scaler = amp_settings(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)  # fp16 on CUDA only
    steps_per_epoch = len(loader)
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    schedule = {"total": total, "warmup": max(1, int(config.warmup * total))}
    metadata = {"tree": tree.to_dict(), "map": str(pyramid.path),
                "train_config": config.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    best, step = None, 0
    for epoch in range(config.epochs):
        dataset.set_epoch(epoch)
        epoch_start = time.time()
        first = step
        step, loss_sum, seen = _epoch(model, loader, optimizer, scaler, config, device,
                                      autocast, schedule, step, steps_per_epoch, epoch, started,
                                      progress)
        elapsed = time.time() - epoch_start
        stopping = out_of_budget(config, step, started)
        if config.max_minutes and epoch == 0 and not stopping:
            schedule["total"], schedule["warmup"] = fit_schedule_to_budget(
                config, schedule["total"], schedule["warmup"], step, first, elapsed, started)
        record = {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / max(seen, 1),
                  "temperature": float(1.0 / model.scale().detach()),
                  "lr": optimizer.param_groups[0]["lr"], "epoch_s": round(elapsed, 3),
                  "samples_per_s": round(seen / max(elapsed, 1e-9), 2)}
        validated = len(val_set) and ((epoch + 1) % config.val_every == 0
                                      or epoch + 1 == config.epochs or stopping)
        if validated:
            record.update(validate(model, pyramid, val_loader, device,
                                   config.embed_batch_size))
        history.append(record)
        write_history(out / METRICS_LOG, history)
        log(_epoch_line(record))
        meta = {**metadata, "epoch": record["epoch"], "metrics": record}
        if validated and (best is None or record["val_recall@1"] > best):
            best = record["val_recall@1"]
            save_retrieval(out / BEST, model, {**meta, "best_metric": "val_recall@1"})
        save_retrieval(out / LAST, model, meta)
        if stopping:
            log(f"stopping after {step} steps: budget reached (max_steps {config.max_steps}, "
                f"max_minutes {config.max_minutes})")
            break
    if not (out / BEST).exists():  # no validation ran: the last epoch is what we ship
        save_retrieval(out / BEST, model, {**metadata, "epoch": len(history),
                                           "best_metric": None})
    summary = {"best_checkpoint": str(out / BEST), "last_checkpoint": str(out / LAST),
               "best_metric": "val_recall@1", "best_value": best, "epochs": len(history),
               "steps": step, "train_samples_per_epoch": len(dataset),
               "val_samples": len(val_set), "skipped_outside_root": len(labeled.skipped),
               "views": views, "view_level": tree.depth - 1,
               "wall_s": round(time.time() - started, 1),
               "final": history[-1] if history else {}}
    write_json(out / SUMMARY, summary)
    return summary


def _epoch(model: RetrievalModel, loader: DataLoader, optimizer: torch.optim.Optimizer,
           scaler: torch.amp.GradScaler, config: TrainConfig, device: torch.device,
           autocast: dict, schedule: dict, step: int, steps_per_epoch: int, epoch: int,
           started: float, progress: bool) -> tuple[int, float, int]:
    """Run one epoch of InfoNCE steps; return (global step, summed loss, samples seen)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum, seen = 0.0, 0
    bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
               disable=not progress)
    for index, batch in enumerate(loader):
        if index >= steps_per_epoch or (index and out_of_budget(config, step, started)):
            break
        factor = lr_factor(step, schedule["total"], schedule["warmup"])
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        with torch.autocast(**autocast):
            frames = model.encode_frames(batch["ground"].to(device))
            views = model.encode_views(batch["views"].to(device))[batch["view_slots"].to(device)]
        rows = batch["view_rows"].to(device)
        loss = info_nce(frames.float(), views.float(), rows, model.scale())
        if not torch.isfinite(loss):
            raise JziError(f"retrieval training diverged: loss is {loss.item()} at step {step} "
                           f"(lower lr or use amp=off)")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        step += 1
        loss_sum += loss.item() * len(rows)
        seen += len(rows)
        bar.update(1)
        if index % config.log_every == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    bar.close()
    return step, loss_sum, seen


def _epoch_line(record: dict) -> str:
    text = (f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, temperature "
            f"{record['temperature']:.4f}, {record['samples_per_s']:.1f} samples/s")
    if "val_recall@1" in record:
        text += (f"; val recall@1 {record['val_recall@1']:.3f}, recall@5 "
                 f"{record['val_recall@5']:.3f}, val loss {record['val_loss']:.4f} "
                 f"({record['val_samples']} frames)")
    return text
