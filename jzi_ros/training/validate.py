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
Validation: greedy autoregressive decoding (beam 1) against held-out samples.

Metrics: Recall@1 within 25/50/100 m (terminal-cell centre vs GPS), exact-path accuracy per
level (first l actions all right), and the teacher-forced cross-entropy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from jzi_ros.evaluation.metrics import DEFAULT_RECALL_M, error_summary, recall_at
from jzi_ros.geo import CellTree, haversine_m
from jzi_ros.inference.decode import beam_search
from jzi_ros.model.zoom import ZoomModel


def path_errors_m(tree: CellTree, predicted: np.ndarray, latitudes: np.ndarray,
                  longitudes: np.ndarray) -> np.ndarray:
    """Metres between each predicted cell's centre and the true position."""
    centers = tree.cell_centers_local(predicted)
    lat, lon = tree.to_latlon(centers[:, 0], centers[:, 1])
    return haversine_m(lat, lon, latitudes, longitudes)


def path_metrics(tree: CellTree, predicted: np.ndarray, truth: np.ndarray,
                 latitudes: np.ndarray, longitudes: np.ndarray) -> dict[str, float]:
    errors = path_errors_m(tree, predicted, latitudes, longitudes)
    metrics = {f"recall@{d:g}m": r for d, r in recall_at(errors, DEFAULT_RECALL_M).items()}
    correct = np.cumprod(predicted == truth, axis=1).astype(bool)
    for level in range(tree.depth):
        metrics[f"exact@{level + 1}"] = float(correct[:, level].mean()) if len(correct) else 0.0
    metrics["exact"] = metrics[f"exact@{tree.depth}"]
    metrics.update({f"error_{k}": v for k, v in error_summary(errors).items()})
    return metrics


@torch.no_grad()
def evaluate(model: ZoomModel, loader: DataLoader, view_table: torch.Tensor, tree: CellTree,
             device: torch.device, progress: bool = False,
             autocast: dict | None = None) -> dict[str, float]:
    """Decode every sample of ``loader`` (a non-augmented ZoomDataset) greedily."""
    was_training = model.training
    model.eval()
    dataset = loader.dataset
    predictions, truths, indices, losses = [], [], [], []
    try:
        for batch in tqdm(loader, desc="validating", unit="batch", leave=False,
                          disable=not progress):
            with torch.autocast(**(autocast or {"device_type": device.type, "enabled": False})):
                ground = model.encode_ground(batch["ground"].to(device)).float()
                paths, _ = beam_search(model, ground, view_table, tree, beam_width=1)
                views = view_table[batch["view_rows"].to(device)]
                truth = batch["path"].to(device)
                logits = model(ground, views, truth[:, :-1])
            losses.append(F.cross_entropy(logits.float().flatten(0, 1), truth.flatten(),
                                          reduction="sum").item())
            predictions.append(paths[:, 0].cpu().numpy())
            truths.append(batch["path"].numpy())
            indices.append(batch["index"].numpy())
    finally:
        model.train(was_training)
    predicted = np.concatenate(predictions)
    truth = np.concatenate(truths)
    index = np.concatenate(indices)
    samples = [dataset.data.samples[i] for i in index]
    metrics = path_metrics(tree, predicted, truth,
                           np.array([s.latitude for s in samples]),
                           np.array([s.longitude for s in samples]))
    metrics["val_loss"] = sum(losses) / max(1, truth.size)
    metrics["val_samples"] = int(len(truth))
    return metrics
