"""The built-in PyTorch architectures: MLP on rows; CNN, LSTM and GRU on (batch, time, features)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MLP(nn.Sequential):
    def __init__(self, n_features: int, n_outputs: int, hidden_units: list[int], dropout_rate: float):
        layers: list[nn.Module] = []
        width = n_features
        for units in hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if dropout_rate > 0:
                layers.append(nn.Dropout(dropout_rate))
            width = units
        layers.append(nn.Linear(width, n_outputs))
        super().__init__(*layers)


class ConvNet(nn.Module):
    """1-D convolutions over time, then a linear head over the whole flattened window, so any
    step of the window can matter (a head on the last step alone sees only a few rows back)."""

    def __init__(self, n_features: int, n_outputs: int, hidden_units: list[int], dropout_rate: float,
                 sequence_length: int):
        super().__init__()
        blocks: list[nn.Module] = []
        width = n_features
        for channels in hidden_units:
            blocks += [nn.Conv1d(width, channels, kernel_size=3, padding=1), nn.ReLU()]
            if dropout_rate > 0:
                blocks.append(nn.Dropout(dropout_rate))
            width = channels
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(width * sequence_length, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x.transpose(1, 2))          # (batch, channels, time)
        return self.head(h.flatten(1))


class RecurrentNet(nn.Module):
    """Stacked LSTM or GRU layers (one per entry of hidden_units); the last step feeds the head."""

    def __init__(self, cell: str, n_features: int, n_outputs: int, hidden_units: list[int], dropout_rate: float):
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.layers = nn.ModuleList()
        width = n_features
        for units in hidden_units:
            self.layers.append(rnn(width, units, batch_first=True))
            width = units
        self.dropout = nn.Dropout(dropout_rate)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x, _ = layer(x)
            x = self.dropout(x)
        return self.head(x[:, -1, :])


def build_model(spec: dict[str, Any]) -> nn.Module:
    """Build from a spec: model_type, n_features, n_outputs, hidden_units, dropout_rate (and
    sequence_length for cnn)."""
    kind = spec["model_type"]
    args = (spec["n_features"], spec["n_outputs"], list(spec["hidden_units"]), float(spec["dropout_rate"]))
    if kind == "mlp":
        return MLP(*args)
    if kind == "cnn":
        if not spec.get("sequence_length"):
            raise ValueError("a cnn spec needs its sequence_length")
        return ConvNet(*args, int(spec["sequence_length"]))
    if kind in ("lstm", "gru"):
        return RecurrentNet(kind, *args)
    raise ValueError(f"unknown model_type {kind!r}")
