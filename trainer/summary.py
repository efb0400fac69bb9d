"""A model's summary: layers, output shapes, parameter counts and the training-memory estimate for
the chosen batch size, on both backends (torchinfo for torch, Keras's own layer introspection and
``model.summary`` for TensorFlow).

- :func:`model_summary` summarises a config and a DataFrame without creating a run (the panel's
  Model tab calls it as the controls change). A torch model is built on PyTorch's ``meta``
  device, which has shapes but no memory, so even a model too big to train is summarised for
  free; a Keras model is built on the CPU, or, when it would not fit, its layers are computed
  from the config (``built=False``). TensorFlow is imported only for ``backend="tensorflow"``.
- :func:`run_summary` (``run.summary()``) summarises the model a run holds, a user's own model
  included, without touching its training state.

Importing this module imports no framework.
"""
from __future__ import annotations

import copy
import html
import itertools
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Union

import pandas as pd

from .available_memory import Budget
from .config import ConfigError, TrainingConfig
from .data import PreparedData, prepare_data
from .memory_fit import Placement, placements, refusal, too_big
from .model_size import RUN_OVERHEAD, DataShape, LayerSize, MemoryEstimate, ModelSpec, builtin_layers, gib

LAYER_COLUMNS = ["name", "type", "output_shape", "parameters", "trainable_parameters"]
_HTML_ROWS = 60          # longer layer tables show their first and last rows


@dataclass
class ModelSummary:
    """What a model is and what training it takes. ``layers`` has one row per layer (``name``,
    ``type``, ``output_shape`` with ``None`` for the batch, ``parameters``, ``trainable_parameters``)."""

    backend: str
    model_type: str                     # mlp, cnn, lstm, gru, or "custom" for a user's model
    model_class: str
    layers: pd.DataFrame
    total_parameters: int
    trainable_parameters: int
    batch_size: int
    memory: Optional[MemoryEstimate]    # training memory for batch_size (None: unknown)
    available: Optional[Budget] = None  # what the device has available now (config summaries only)
    errors: list[dict[str, Any]] = field(default_factory=list)   # why Trainer would refuse it
    built: bool = True                  # False: layers computed from the config; the model was too big to build
    text: str = ""                      # the framework's own summary

    @property
    def non_trainable_parameters(self) -> int:
        return self.total_parameters - self.trainable_parameters

    @property
    def fits(self) -> Optional[bool]:
        """Whether training fits the memory available (None when that is not known)."""
        if self.errors:
            return False
        if self.memory is None or self.available is None:
            return None
        return self.memory.total <= self.available.bytes

    @property
    def problem(self) -> Optional[str]:
        """The refusal Trainer would raise, as one message; None when it would not refuse."""
        return str(ConfigError(self.errors)) if self.errors else None

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        rows = [{"name": str(r.name), "type": str(r.type),
                 "output_shape": None if r.output_shape is None else [None if d is None else int(d) for d in r.output_shape],
                 "parameters": int(r.parameters), "trainable_parameters": int(r.trainable_parameters)}
                for r in self.layers.itertuples(index=False)]
        return {"backend": self.backend, "model_type": self.model_type, "model_class": self.model_class,
                "total_parameters": int(self.total_parameters),
                "trainable_parameters": int(self.trainable_parameters),
                "non_trainable_parameters": int(self.non_trainable_parameters),
                "batch_size": int(self.batch_size), "layers": rows,
                "memory": self.memory.to_dict() if self.memory is not None else None,
                "available": self.available.to_dict() if self.available is not None else None,
                "fits": self.fits, "errors": [_json_error(e) for e in self.errors], "built": self.built}

    def _memory_headline(self) -> str:
        if self.memory is None:
            return "training memory: unknown"
        m = self.memory
        where = m.where if m.replicas == 1 else f"{m.where}, {m.replicas} copies"
        line = f"training memory for batch_size={self.batch_size} ({where}): about {gib(m.total)}"
        if self.available is not None:
            line += f" of {gib(self.available.bytes)} available"
        return line

    def _memory_line(self) -> str:
        return self._memory_headline() + (f" ({self.memory.breakdown()})" if self.memory is not None else "")

    def _count_line(self) -> str:
        line = f"{self.total_parameters:,} parameters"
        if self.non_trainable_parameters:
            line += f" ({self.trainable_parameters:,} trainable, {self.non_trainable_parameters:,} frozen)"
        return line

    def __repr__(self) -> str:
        head = f"ModelSummary: {self.model_class} ({self.backend}, {self.model_type})"
        if not self.built:
            head += ", computed from the config: the model is too big to build"
        table = [("Layer", "Type", "Output shape", "Params")] + [
            (str(r.name), str(r.type), _shape_text(r.output_shape), f"{r.parameters:,}" if r.parameters else "--")
            for r in self.layers.itertuples(index=False)]
        widths = [max(len(row[i]) for row in table) for i in range(4)]
        lines = [head] + ["  ".join(c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                          for row in table]
        lines += [self._count_line(), self._memory_line()]
        if self.errors:
            lines.append("would be refused: " + "; ".join(f"{e['field']}: {e['message']}" for e in self.errors))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        cell = "padding:1px 12px 1px 0;text-align:left;white-space:nowrap"
        num = "padding:1px 0 1px 12px;text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums"
        head = ";border-bottom:1px solid var(--jp-border-color1,#ccc)"
        rows = list(self.layers.itertuples(index=False))
        shown: list[Any] = rows
        if len(rows) > _HTML_ROWS:
            half = _HTML_ROWS // 2
            shown = rows[:half] + [None] + rows[-half:]
        body = []
        for r in shown:
            if r is None:
                body.append(f'<tr><td colspan="4" style="{cell};color:#888">… {len(rows) - 2 * (_HTML_ROWS // 2)} more layers</td></tr>')
                continue
            params = f"{r.parameters:,}" if r.parameters else "–"
            frozen = r.parameters - r.trainable_parameters
            if frozen:
                params += f' <span style="color:#888">({frozen:,} frozen)</span>'
            body.append(f'<tr><td style="{cell}">{esc(str(r.name))}</td><td style="{cell}">{esc(str(r.type))}</td>'
                        f'<td style="{cell};font-family:var(--jp-code-font-family,monospace)">{esc(_shape_text(r.output_shape))}</td>'
                        f'<td style="{num}">{params}</td></tr>')
        note = ("" if self.built else
                ' <span style="color:#888">(computed from the config: too big to build)</span>')
        out = ['<div class="epoch-widgets-model-summary" style="font-size:12px;line-height:1.4">',
               f'<div><b>{esc(self.model_class)}</b> <span style="color:#666">{esc(self.backend)} · '
               f'{esc(self.model_type)}</span>{note}</div>',
               '<table style="border-collapse:collapse;margin:4px 0;font-size:12px">',
               f'<thead><tr><th style="{cell}{head}">Layer</th><th style="{cell}{head}">Type</th>'
               f'<th style="{cell}{head}">Output shape</th><th style="{num}{head}">Params</th></tr></thead>',
               "<tbody>" + "".join(body) + "</tbody></table>",
               f"<div><b>{esc(self._count_line())}</b></div>",
               f"<div>{esc(self._memory_headline())}</div>"]
        if self.memory is not None:
            out.append(f'<div style="color:#666">{esc(self.memory.breakdown())}</div>')
        for e in self.errors:
            out.append(f'<div style="color:#c62828">{esc(e["field"])}: {esc(e["message"])}</div>')
        out.append("</div>")
        return "".join(out)


def _json_error(e: dict[str, Any]) -> dict[str, Any]:
    value = e.get("value")
    return {"field": e["field"], "value": value if isinstance(value, (int, float, str, list, type(None))) else str(value),
            "message": e["message"]}


def _shape_text(shape: Any) -> str:
    if shape is None:
        return "?"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _frame(layers: list[LayerSize]) -> pd.DataFrame:
    return pd.DataFrame([{"name": layer.name, "type": layer.type, "output_shape": layer.output_shape,
                          "parameters": int(layer.parameters), "trainable_parameters": int(layer.trainable_parameters)}
                         for layer in layers], columns=LAYER_COLUMNS)


# ---------------------------------------------------------------------- torch

def _meta_copy(model: Any) -> Any:
    """A copy of ``model`` whose parameters and buffers live on the ``meta`` device: same
    structure and shapes, no memory, and nothing shared with the original (which may be training)."""
    import torch
    from torch import nn

    memo: dict[int, Any] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        meta = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(meta, requires_grad=tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def _torch_table(model: Any, shape: DataShape, may_run_original: bool) -> tuple[list[LayerSize], str]:
    """Layers of a torch module from torchinfo (a forward pass with one sample on a meta copy)."""
    import torch

    try:
        import torchinfo
        import torchinfo.torchinfo as torchinfo_impl
    except ImportError:
        torchinfo = None
    names: dict[int, str] = {}
    stats = None
    attempts = [("meta", lambda: _meta_copy(model))] if torchinfo is not None else []
    if may_run_original and torchinfo is not None:
        attempts.append(("original", lambda: model))
    for kind, make in attempts:
        try:
            probe = make()
            names = {id(m): name for name, m in probe.named_modules()}
            device = torch.device("meta") if kind == "meta" else next(
                itertools.chain(probe.parameters(), probe.buffers()), torch.empty(0)).device
            x = torch.zeros((1,) + tuple(d for d in shape.input_shape[1:]), device=device)
            stats = torchinfo.summary(probe, input_data=x, device=device, mode="eval", verbose=0, depth=64,
                                      col_names=("output_size", "num_params", "trainable"))
            break
        except Exception:      # a forward pass the meta device cannot run (data-dependent code)
            continue
        finally:
            # torchinfo keeps the last forward pass per class name, whatever cache_forward_pass says.
            getattr(torchinfo_impl, "_cached_forward_pass", {}).pop(type(model).__name__, None)
    rows: list[LayerSize] = []
    own = _own_params(model)
    if own[0]:
        # Parameters the model holds itself, outside any layer.
        rows.append(LayerSize("(own parameters)", type(model).__name__, None, *own))
    if stats is None:
        # Without a forward pass: the layers by name, with no output shapes.
        rows += [LayerSize(name, type(m).__name__, None, *_own_params(m)) for name, m in model.named_modules()
                 if name and (not list(m.children()) or _own_params(m)[0])]
        return rows, ("" if torchinfo is not None else
                      "output shapes need torchinfo: pip install torchinfo (or epoch-widgets[torch])")
    seen: set[int] = set()
    for info in stats.summary_list:
        module = info.module
        if info.depth == 0 or module is None:
            continue
        own = _own_params(module)
        if list(module.children()) and not own[0]:
            continue           # a container: its layers have their own rows
        first = id(module) not in seen
        seen.add(id(module))
        out = list(info.output_size) if isinstance(info.output_size, (list, tuple)) else []
        out_shape = (None, *out[1:]) if out and out[0] == 1 else tuple(out) or None
        rows.append(LayerSize(names.get(id(module), info.var_name or ""), info.class_name, out_shape,
                              *(own if first else (0, 0))))
    return rows, str(stats)


def _own_params(module: Any) -> tuple[int, int]:
    params = list(module.parameters(recurse=False))
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _torch_counts(model: Any) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _torch_builtin(config: TrainingConfig, shape: DataShape) -> Any:
    import torch

    from .backends.torch_models import build_model

    with torch.device("meta"):
        return build_model(_spec_dict(config, shape))


# ---------------------------------------------------------------------- keras

def _keras_table(model: Any) -> tuple[list[LayerSize], str]:
    """Layers of a Keras model by introspection, and ``model.summary``'s text."""
    import numpy as np

    rows = []
    for layer in model.layers:
        try:
            out_shape = tuple(None if d is None else int(d) for d in layer.output.shape)
        except (AttributeError, ValueError, TypeError):   # a subclassed model's layers have no symbolic output
            out_shape = None
        params = layer.count_params() if layer.built else 0
        trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        rows.append(LayerSize(layer.name, type(layer).__name__, out_shape, int(params), trainable))
    lines: list[str] = []
    try:
        model.summary(print_fn=lambda line, line_break=True: lines.append(line))
    except Exception:       # an unbuilt subclassed model cannot be summarised
        pass
    return rows, "\n".join(lines)


def _keras_counts(model: Any) -> tuple[int, int]:
    import numpy as np

    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return int(model.count_params()), trainable


def _keras_builtin(config: TrainingConfig, shape: DataShape) -> Any:
    from .backends import backend_module

    backend_module("tensorflow")          # a clear error naming the package when it is missing
    import tensorflow as tf

    from .backends.tf_models import build_model

    with tf.device("/CPU:0"):
        return build_model(_spec_dict(config, shape), config.seed or 0, config.mixed_precision)


def _spec_dict(config: TrainingConfig, shape: DataShape) -> dict[str, Any]:
    return {"model_type": config.model_type, "n_features": shape.n_features, "n_outputs": shape.n_outputs,
            "hidden_units": list(config.hidden_units), "dropout_rate": config.dropout_rate,
            "sequence_length": shape.window}


# ---------------------------------------------------------------------- putting it together

def parameter_count(model: Any) -> int:
    """The framework's own parameter count of a torch module or a Keras model."""
    if hasattr(model, "count_params"):
        return int(model.count_params())
    return sum(p.numel() for p in model.parameters())


def _table(backend: str, model: Any, shape: DataShape, may_run_original: bool) -> tuple[list[LayerSize], str, int, int]:
    if backend == "torch":
        rows, text = _torch_table(model, shape, may_run_original)
        return (rows, text, *_torch_counts(model))
    rows, text = _keras_table(model)
    return (rows, text, *_keras_counts(model))


def _main_placement(config: TrainingConfig) -> tuple[Optional[Placement], list[Placement]]:
    found = placements(config)
    main = next((p for p in found if not p.weights_only), None)
    return main, found


def _need(placement: Optional[Placement], spec: ModelSpec, shape: DataShape, config: TrainingConfig,
          **custom: Any) -> MemoryEstimate:
    if placement is None:
        placement = Placement("RAM", "on the CPU")
    return _as_trained_here(placement.need(spec, shape, **custom), config)


def _as_trained_here(memory: MemoryEstimate, config: TrainingConfig) -> MemoryEstimate:
    """The estimate shown for a one-device CPU run when this process has imported the framework
    (summarising a built-in model does): its import memory is spent already and not in what is
    available, so a run adds only its working memory (a 2,466-parameter MLP: about 16 MiB, not
    0.3 GiB). The refusal (``memory_fit``) still counts a fresh process's, to be safe."""
    if (config.devices == 1 and memory.where == "RAM" and memory.replicas == 1
            and config.backend in sys.modules and memory.overhead > RUN_OVERHEAD):
        return replace(memory, overhead=RUN_OVERHEAD)
    return memory


def model_summary(config: Union[TrainingConfig, dict[str, Any]], data: Union[pd.DataFrame, PreparedData], *,
                  model: Any = None) -> ModelSummary:
    """The summary of the model ``Trainer(config, data, model=model)`` would train, without
    creating a run or touching any training state. ``data`` is the DataFrame (or its
    :class:`~trainer.data.PreparedData`). A config too big to train is not refused here: the
    summary's ``errors``/``problem`` say what Trainer would refuse, and ``fits`` is False.
    Raises ConfigError for an invalid config or data, as Trainer would."""
    if isinstance(config, dict):
        config = TrainingConfig.from_dict(config)
    prepared = data if isinstance(data, PreparedData) else prepare_data(config, data, seed=config.seed or 0)
    shape = DataShape.of(prepared)
    spec = ModelSpec.of(config)
    main, found = _main_placement(config)
    errors: list[dict[str, Any]] = []
    available = None
    if model is None:
        for placement in found:
            need = placement.need(spec, shape)
            budget = placement.budget(config.backend, for_training=False)
            if placement is main:
                available = budget
            if too_big(need, budget) and not errors:
                errors = refusal(config, shape, placement, need, budget)
        built = True
        if config.backend == "torch":
            built_model = _torch_builtin(config, shape)
            rows, text, total, trainable = _table("torch", built_model, shape, may_run_original=False)
            model_class = type(built_model).__name__
        elif not errors:
            built_model = _keras_builtin(config, shape)
            rows, text, total, trainable = _table("tensorflow", built_model, shape, may_run_original=False)
            model_class = type(built_model).__name__
        else:
            # Building it would allocate the weights that do not fit: the layers come from the config.
            rows, text, built = builtin_layers(spec, shape), "", False
            total = sum(r.parameters for r in rows)
            trainable = sum(r.trainable_parameters for r in rows)
            model_class = "Functional"
        model_type = config.model_type
        memory = _need(main, spec, shape, config)      # after building: the framework is imported now
    else:
        expected = "parameters" if config.backend == "torch" else "count_params"
        if not hasattr(model, expected):
            kind = "a torch.nn.Module" if config.backend == "torch" else "a keras.Model"
            raise ConfigError.single("model", type(model).__name__, f"expected {kind} for the {config.backend} backend")
        rows, text, total, trainable = _table(config.backend, model, shape, may_run_original=True)
        memory = _need(main, spec, shape, config, layers=rows, parameters=total, trainable=trainable)
        available = main.budget(config.backend, for_training=False) if main is not None else None
        built, model_type, model_class = True, "custom", type(model).__name__
    return ModelSummary(backend=config.backend, model_type=model_type, model_class=model_class,
                        layers=_frame(rows), total_parameters=int(total), trainable_parameters=int(trainable),
                        batch_size=config.batch_size, memory=memory, available=available, errors=errors,
                        built=built, text=text)


def run_summary(run: Any) -> ModelSummary:
    """The summary of the model ``run`` holds (a user's own model too). Safe while it trains: a
    torch model is summarised through a copy on the meta device, a Keras model by introspection."""
    config, backend = run.config, run.backend
    model = backend.model
    custom = bool(getattr(backend, "custom_model", False))
    shape = DataShape.of(run.data)
    state = getattr(getattr(run, "state", None), "value", None)
    rows, text, total, trainable = _table(config.backend, model, shape,
                                          may_run_original=state not in ("running", "paused"))
    main, _ = _main_placement(config)
    spec = ModelSpec.of(config)
    memory = (_need(main, spec, shape, config, layers=rows, parameters=total, trainable=trainable) if custom
              else _need(main, spec, shape, config))
    return ModelSummary(backend=config.backend, model_type="custom" if custom else config.model_type,
                        model_class=type(model).__name__, layers=_frame(rows), total_parameters=int(total),
                        trainable_parameters=int(trainable), batch_size=config.batch_size, memory=memory,
                        text=text)
