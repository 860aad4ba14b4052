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
The training loop: teacher forcing, AdamW, warm-up + cosine, AMP, DDP, resumable.

Two modes, decided by the model config: with a frozen encoder every map-view token is a row of
the map's precomputed embedding table (only ground images go through the encoder); with a
(partly) trainable encoder the batch's unique map views are encoded in the step, and the map
is re-embedded with the shipped checkpoint's encoder at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
from pathlib import Path
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from jzi_ros.errors import JziError
from jzi_ros.files import atomic_open, write_json
from jzi_ros.inference.image import check_image_files
from jzi_ros.maps.embed import check_model_matches_tree, embed_views, write_map_embeddings
from jzi_ros.maps.pyramid import MapPyramid
from jzi_ros.model.checkpoint import load_checkpoint, save_checkpoint
from jzi_ros.model.zoom import ZoomModel
from jzi_ros.training import ddp
from jzi_ros.training.config import TrainConfig
from jzi_ros.training.data import Collate, training_dataset, ZoomDataset
from jzi_ros.training.manifest import (label_samples, read_manifest, split_train_val,
                                       write_held_out)
from jzi_ros.training.optim import (amp_settings, fit_schedule_to_budget, lr_factor,
                                    make_optimizer, out_of_budget)
from jzi_ros.training.render import check_not_test
from jzi_ros.training.state import load_train_state, save_train_state
from jzi_ros.training.validate import evaluate

LAST, BEST, STATE = "last.safetensors", "best.safetensors", "last.state.safetensors"
METRICS_LOG, SUMMARY, VAL_MANIFEST = "metrics.jsonl", "summary.json", "val.csv"


class TrainStep(nn.Module):
    """Everything differentiable in one ``forward`` so DDP can hook the gradients."""

    def __init__(self, model: ZoomModel, frozen: bool) -> None:
        super().__init__()
        self.model = model
        self.frozen = frozen

    def forward(self, batch: dict, view_table: torch.Tensor | None) -> torch.Tensor:
        model = self.model
        if self.frozen:
            with torch.no_grad():
                ground = model.encode_ground(batch["ground"])
            views = view_table[batch["view_rows"]]
        else:
            ground = model.encode_ground(batch["ground"])
            views = model.encode_views(batch["views"])[batch["view_slots"]]
        return model(ground, views.to(ground.dtype), batch["path"][:, :-1])


def _better(metric: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if metric == "val_loss" else value > best


def _build_model(config: TrainConfig, pyramid: MapPyramid, out: Path, resume: bool
                 ) -> ZoomModel:
    if resume:
        model, _ = load_checkpoint(out / LAST)
    elif config.init:
        model, _ = load_checkpoint(config.init)
        _check_init_overrides(config, model)
        encoder_overrides = config.model.get("encoder", {})
        if "trainable_blocks" in encoder_overrides:
            model.encoder.apply_trainable_blocks(encoder_overrides["trainable_blocks"])
        if "heading" in config.model:  # a preprocessing policy, not architecture
            model.config.heading = config.model["heading"]
    else:
        model_config = config.model_config()
        model_config.grid, model_config.depth = pyramid.tree.grid, pyramid.tree.depth
        model = ZoomModel(model_config)
    check_model_matches_tree(model, pyramid, str(config.init or "being trained"))
    return model


def _check_init_overrides(config: TrainConfig, model: ZoomModel) -> None:
    """
    Refuse ``model`` overrides that an ``init`` checkpoint would silently replace.

    The architecture comes from the checkpoint; only ``encoder.trainable_blocks`` and
    ``heading`` apply on top of it (``model_preset`` is ignored).
    """
    from jzi_ros.model.config import deep_merge

    rest = {k: v for k, v in config.model.items() if k != "heading"}
    rest["encoder"] = {k: v for k, v in rest.get("encoder", {}).items()
                       if k not in ("trainable_blocks", "weights")}
    have = model.config.to_dict()
    merged = deep_merge(have, rest)
    changed = sorted(f"{k}" for k in merged if merged[k] != have[k])
    if changed:
        raise JziError(f"training config: init={config.init} fixes the architecture, but "
                       f"'model' overrides {changed} differ from it; drop them (only "
                       f"model.encoder.trainable_blocks and model.heading apply with init)")


def _map_table(pyramid: MapPyramid, model: ZoomModel, config: TrainConfig,
               info: ddp.DistInfo, log: Callable[[str], None]) -> torch.Tensor:
    """Return the map's stored table for this encoder, computing and storing it when missing."""
    encoder_hash = model.encoder_hash()
    if info.is_main and not pyramid.has_embeddings(encoder_hash):
        log(f"embedding {pyramid.tree.num_views} map views with encoder {encoder_hash}")
        write_map_embeddings(pyramid, model.to(info.device), config.embed_batch_size,
                             info.device, progress=True, info={"source": "jzi train"})
    ddp.barrier(info)
    table = pyramid.load_embeddings(encoder_hash)
    return torch.from_numpy(table.astype(np.float32)).to(info.device)


def train(config: TrainConfig, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print) -> dict:
    """Run a training job; returns (and writes to OUT/summary.json) the final summary."""
    info = ddp.setup(config.device)
    try:
        return _train(config, resume, progress and info.is_main,
                      log if info.is_main else (lambda _msg: None), info)
    finally:
        ddp.teardown(info)


@dataclass
class _Run:
    """What every step of a training run shares (built once by :func:`_train`)."""

    config: TrainConfig
    info: ddp.DistInfo
    pyramid: MapPyramid
    model: ZoomModel
    frozen: bool
    view_table: torch.Tensor | None  # the map's embeddings when the encoder is frozen
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: dict
    step_module: nn.Module  # TrainStep, DDP-wrapped when distributed
    params: list  # trainable parameters (gradient clipping)
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def _train(config: TrainConfig, resume: bool, progress: bool, log: Callable[[str], None],
           info: ddp.DistInfo) -> dict:
    started = time.time()
    out, device = Path(config.out), info.device
    if not resume and (out / LAST).exists():
        raise JziError(f"output {out} already holds a training run ({LAST}); pass --resume to "
                       f"continue it or choose another 'out'")
    torch.manual_seed(config.seed)
    pyramid = MapPyramid.open(config.map)
    model = _build_model(config, pyramid, out, resume)
    render = config.render_spec()
    labeled, train_set, val_set = training_samples(config, pyramid, log, render)
    if info.is_main and write_held_out(out / VAL_MANIFEST, labeled, val_set):
        log(f"held out {len(val_set)} training row(s) for validation: {out / VAL_MANIFEST} "
            f"(calibrate with `jzi localize --calibrate {out / VAL_MANIFEST}`)")
    frozen = model.config.encoder.frozen
    n_train = len(train_set) if render is None else render.samples_per_epoch
    log(f"training on {n_train} samples, validating on {len(val_set)}; encoder "
        f"{'frozen (map views from the embedding table)' if frozen else 'trainable'}; "
        f"device {device}, {info.world_size} process(es)")

    model.to(device)
    view_table = _map_table(pyramid, model, config, info, log) if frozen else None
    dataset, sampler, loader, val_loader = _loaders(config, pyramid, model, train_set, val_set,
                                                    info, render)
    run = _setup_run(config, info, pyramid, model, view_table, len(loader))
    start_epoch, global_step, best, history = _resume_point(out, run.optimizer, resume, log)
    metadata = {"tree": pyramid.tree.to_dict(), "map": str(pyramid.path),
                "train_config": config.to_dict()}
    for epoch in range(start_epoch, config.epochs):
        if info.distributed:
            sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        epoch_start = time.time()
        first_step = global_step
        global_step, loss_sum, seen = _train_epoch(run, loader, epoch, global_step, progress,
                                                   started)
        elapsed = time.time() - epoch_start
        stopping = ddp.all_reduce_mean(float(out_of_budget(config, global_step, started)),
                                       info) > 0
        if config.max_minutes and epoch == start_epoch and not stopping:
            run.total_steps, run.warmup_steps = fit_schedule_to_budget(
                config, run.total_steps, run.warmup_steps, global_step, first_step, elapsed,
                started)
        record = {"epoch": epoch + 1, "step": global_step,
                  "train_loss": ddp.all_reduce_mean(loss_sum / max(1, seen), info),
                  "lr": run.optimizer.param_groups[0]["lr"], "epoch_s": round(elapsed, 3),
                  "samples_per_s": round(seen * info.world_size / max(elapsed, 1e-9), 2)}
        validate_now = len(val_set) and ((epoch + 1) % config.val_every == 0
                                         or epoch + 1 == config.epochs or stopping)
        if validate_now and info.is_main:
            record.update(_validate(run, val_loader, progress))
        if info.is_main:
            history.append(record)
            best = _save_epoch(run, out, history, record, bool(validate_now), best, global_step,
                               metadata, log)
        ddp.barrier(info)
        if stopping:
            log(f"stopping after {global_step} steps: budget reached (max_steps "
                f"{config.max_steps}, max_minutes {config.max_minutes})")
            break
    return _finish(config, pyramid, model, history, best, frozen, info, started, log,
                   n_train, len(val_set), len(labeled.skipped))


def training_samples(config: TrainConfig, pyramid: MapPyramid, log: Callable[[str], None],
                     render=None):
    """
    Return (labelled manifest, training set, validation set); JziError before any step.

    With ``render`` (views rendered on the fly) the manifest is optional and its training
    rows may be empty; it must not name the render sources as the source of its test rows.
    """
    labeled = label_samples(read_manifest(config.manifest) if config.manifest else [],
                            pyramid.tree)
    check_not_test(render, labeled.samples, config.manifest)
    if labeled.skipped:
        first = labeled.skipped[0]
        log(f"skipped {len(labeled.skipped)} sample(s) outside the map's root square "
            f"(first: {first.image.name} at {first.latitude:.6f}, {first.longitude:.6f})")
    # every image checked now (missing, truncated, undecodable), not mid-epoch in a worker
    check_image_files([s.image for s in labeled.samples], f"dataset manifest {config.manifest}",
                      workers=max(2, config.num_workers))
    train_set, val_set = split_train_val(labeled, config.val_fraction, config.seed)
    if render is not None:
        log(f"training on {render.samples_per_epoch} views per epoch rendered from "
            f"{', '.join(Path(s).name for s in render.sources)}")
    elif not len(train_set):
        raise JziError(f"dataset manifest {config.manifest}: no training samples inside map "
                       f"{config.map} ({len(labeled.skipped)} outside its root square)")
    return labeled, train_set, val_set


def _loaders(config: TrainConfig, pyramid: MapPyramid, model: ZoomModel, train_set, val_set,
             info: ddp.DistInfo, render=None):
    """Return (training dataset, its sampler, training loader, validation loader)."""
    mc, tree, device = model.config, pyramid.tree, info.device
    frozen = mc.encoder.frozen
    dataset = training_dataset(config, train_set, tree, mc, render)
    sampler = (DistributedSampler(dataset, info.world_size, info.rank, shuffle=True,
                                  seed=config.seed) if info.distributed
               else RandomSampler(dataset, generator=torch.Generator().manual_seed(config.seed)))
    per_rank = math.ceil(len(dataset) / info.world_size)
    loader = DataLoader(dataset, config.batch_size, sampler=sampler,
                        num_workers=config.num_workers, pin_memory=device.type == "cuda",
                        drop_last=per_rank >= 2 * config.batch_size,
                        collate_fn=Collate(pyramid.path, mc, not frozen, config.augment,
                                           config.seed))
    val_loader = DataLoader(ZoomDataset(val_set, tree, mc, augment=False),
                            config.val_batch_size, shuffle=False,
                            num_workers=config.num_workers,
                            collate_fn=Collate(pyramid.path, mc, False, False))
    return dataset, sampler, loader, val_loader


def _setup_run(config: TrainConfig, info: ddp.DistInfo, pyramid: MapPyramid, model: ZoomModel,
               view_table: torch.Tensor | None, loader_steps: int) -> _Run:
    """Schedule, optimizer, AMP and the (DDP-wrapped) step module."""
    steps_per_epoch = loader_steps
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)  # the schedule ends with the budget
    device = info.device
    optimizer = make_optimizer(model, config, device)
    autocast, use_scaler = amp_settings(config, device)
    frozen = model.config.encoder.frozen
    step_module: nn.Module = TrainStep(model, frozen)
    if info.distributed:
        step_module = DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=model.config.depth == 1)
    return _Run(config=config, info=info, pyramid=pyramid, model=model, frozen=frozen,
                view_table=view_table, optimizer=optimizer,
                scaler=torch.amp.GradScaler("cuda", enabled=use_scaler), autocast=autocast,
                step_module=step_module,
                params=[p for p in model.parameters() if p.requires_grad],
                steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                warmup_steps=max(1, int(config.warmup * total_steps)))


def _resume_point(out: Path, optimizer: torch.optim.Optimizer, resume: bool,
                  log: Callable[[str], None]) -> tuple[int, int, float | None, list]:
    """Return (first epoch, global step, best metric, history): zeros, or the saved run's."""
    if not resume:
        return 0, 0, None, []
    state = load_train_state(out / STATE, optimizer)
    start_epoch, global_step = state["epoch"], state["global_step"]
    # a crash between the log and the state write must not duplicate an epoch
    history = [h for h in _read_history(out / METRICS_LOG) if h["epoch"] <= start_epoch]
    log(f"resuming after epoch {start_epoch} (step {global_step})")
    return start_epoch, global_step, state["best"], history


def _train_epoch(run: _Run, loader: DataLoader, epoch: int, global_step: int, progress: bool,
                 started: float | None = None) -> tuple[int, float, int]:
    """
    Run one epoch of optimizer steps; return (global step, summed loss, samples seen).

    The epoch ends early when the budget (max_steps, max_minutes from ``started``) is spent.
    """
    config, device, optimizer = run.config, run.info.device, run.optimizer
    run.step_module.train()
    loss_sum, seen = 0.0, 0
    bar = tqdm(total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}",
               unit="step", disable=not progress)
    for step, batch in enumerate(loader):
        # at least one step per run; under DDP the clock is read only between epochs so
        # that the ranks stop together
        if step >= run.steps_per_epoch or (step and out_of_budget(
                config, global_step, started or time.time(), not run.info.distributed)):
            break
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        factor = lr_factor(global_step, run.total_steps, run.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        with torch.autocast(**run.autocast):
            logits = run.step_module(batch, run.view_table)
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch["path"].flatten(),
                               label_smoothing=config.label_smoothing)
        if not torch.isfinite(loss):
            raise JziError(f"training diverged: loss is {loss.item()} at step "
                           f"{global_step} (lower lr or use amp=bf16/off)")
        optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(run.params, config.grad_clip)
        run.scaler.step(optimizer)
        run.scaler.update()
        global_step += 1
        loss_sum += loss.item() * len(batch["path"])
        seen += len(batch["path"])
        bar.update(1)
        if step % config.log_every == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}",
                            lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    bar.close()
    return global_step, loss_sum, seen


def _validate(run: _Run, val_loader: DataLoader, progress: bool) -> dict:
    """Return the validation metrics (a trainable encoder re-embeds the map views first)."""
    device = run.info.device
    table = run.view_table if run.frozen else torch.from_numpy(embed_views(
        run.pyramid, run.model, run.config.embed_batch_size, device, progress=False
    ).astype(np.float32)).to(device)
    return evaluate(run.model, val_loader, table, run.pyramid.tree, device, progress,
                    run.autocast)


def _save_epoch(run: _Run, out: Path, history: list, record: dict, validated: bool,
                best: float | None, global_step: int, metadata: dict,
                log: Callable[[str], None]) -> float | None:
    """Log the epoch, write metrics, best (when it improved), last and the state; return best."""
    config = run.config
    write_history(out / METRICS_LOG, history)
    log(_epoch_line(record, config.best_metric))
    epoch_meta = {**metadata, "epoch": record["epoch"], "metrics": record}
    if validated and _better(config.best_metric, record[config.best_metric], best):
        best = record[config.best_metric]
        save_checkpoint(out / BEST, run.model, {**epoch_meta, "best_metric": config.best_metric})
    save_checkpoint(out / LAST, run.model, epoch_meta)
    save_train_state(out / STATE, run.optimizer, {"epoch": record["epoch"],
                                                  "global_step": global_step, "best": best})
    return best


def _finish(config: TrainConfig, pyramid: MapPyramid, model: ZoomModel, history: list,
            best: float | None, frozen: bool, info: ddp.DistInfo, started: float,
            log: Callable[[str], None], n_train: int, n_val: int, n_skipped: int) -> dict:
    out = Path(config.out)
    summary: dict = {}
    if info.is_main:
        if not (out / BEST).exists():  # no validation ran: the last epoch is what we ship
            save_checkpoint(out / BEST, model, {"tree": pyramid.tree.to_dict(),
                                                "map": str(pyramid.path),
                                                "epoch": len(history), "best_metric": None})
        shipped, _ = load_checkpoint(out / BEST, device=info.device)
        if not pyramid.has_embeddings(shipped.encoder_hash()):
            # the encoder changed in training: the map's table must match what we ship
            log("re-embedding the map with the trained encoder of best.safetensors")
            write_map_embeddings(pyramid, shipped, config.embed_batch_size, info.device,
                                 progress=True, info={"source": "jzi train",
                                                      "model": str((out / BEST).resolve())})
        summary = {"best_checkpoint": str(out / BEST), "last_checkpoint": str(out / LAST),
                   "best_metric": config.best_metric, "best_value": best,
                   "epochs": len(history), "train_samples": n_train, "val_samples": n_val,
                   "skipped_outside_root": n_skipped, "encoder_frozen": frozen,
                   "encoder_hash": shipped.encoder_hash(),
                   "map_embeddings_hash": pyramid.embeddings_hash(),
                   "wall_s": round(time.time() - started, 1),
                   "final": history[-1] if history else {}}
        write_json(out / SUMMARY, summary)
    ddp.barrier(info)
    return summary


def _epoch_line(record: dict, metric: str) -> str:
    text = (f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, "
            f"{record['samples_per_s']:.1f} samples/s")
    if "val_loss" in record:
        text += (f"; val loss {record['val_loss']:.4f}, R@25/50/100m "
                 f"{record['recall@25m']:.3f}/{record['recall@50m']:.3f}/"
                 f"{record['recall@100m']:.3f}, first step {record['exact@1']:.3f}, "
                 f"exact {record['exact']:.3f} "
                 f"({metric} {record[metric]:.4f})")
    return text


def write_history(path: Path, history: list[dict]) -> None:
    """Write the per-epoch records as JSON lines, atomically (the zoom's and retrieval's)."""
    import json
    with atomic_open(path, "w", encoding="utf-8") as handle:
        for record in history:
            handle.write(json.dumps(record) + "\n")


def _read_history(path: Path) -> list[dict]:
    import json
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
