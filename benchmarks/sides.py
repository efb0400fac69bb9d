"""One side of a benchmark, run by ``harness.py`` in a process of its own:

    python benchmarks/sides.py '{"side": "raw", "rows": 100000, "batch_size": 32, "epochs": 4}'

Every side trains the same MLP (20 -> 128 -> 64 -> 32 -> 2, ReLU, dropout 0.2 after each hidden
layer, Adam with learning rate 1e-3, cross-entropy) on ``trainer.datasets.make_benchmark`` data
(80 % of the rows for training, the rest validated after every epoch, as every side does), and
prints one line ``BENCH-RESULT {json}`` with each epoch's wall and CPU seconds, the training-sample
count, its process id and versions. Nothing else is shared between sides: each imports only what it uses.

Sides:
  raw                 the loop a competent PyTorch user writes: shuffled tensor slices (randperm),
                      model(x), loss.backward(), opt.step() with default Adam and default threads;
                      loss and accuracy summed on the device, validation once per epoch
  torch, tensorflow   trainer.Trainer on that backend (``fit()``; epoch time from its history)
  keras               Keras 3 ``model.fit`` with validation_data
  skorch              skorch NeuralNetClassifier with a validation set
  lightning           Lightning Trainer with a validation DataLoader
  torch-panel         the torch trainer driven by a TrainingPanel, its widget messages counted
  kernel-torch        the torch trainer started in a cell of a real IPython kernel (``await run.wait()``)
  kernel-panel        a TrainingPanel shown and started in a cell of a real kernel: its widget
                      messages go through the kernel's session to a client, as in a notebook
  torch-output        the torch trainer writing artifacts to an output_path, no checkpoints
  torch-checkpoints   the same with a checkpoint at every epoch end (the default)
  panel-refresh       no training: what one curves refresh sends and costs after 50 / 10,000 epochs
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

FEATURES = 20
HIDDEN = [128, 64, 32]
DROPOUT = 0.2
LR = 1e-3
SEED = 0
RESULT_PREFIX = "BENCH-RESULT "


def arrays(rows: int) -> tuple[Any, Any, Any, Any]:
    """(x_train, y_train, x_val, y_val) as float32 / int64 NumPy arrays: the first 80 % train."""
    from trainer.datasets import make_benchmark
    df = make_benchmark(rows, FEATURES, seed=SEED)
    x = df.drop(columns="label").to_numpy(copy=True)
    y = df["label"].to_numpy(copy=True)
    n = int(rows * 0.8)
    return x[:n], y[:n], x[n:], y[n:]


def torch_mlp() -> Any:
    from torch import nn
    layers: list[nn.Module] = []
    width = FEATURES
    for units in HIDDEN:
        layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(DROPOUT)]
        width = units
    return nn.Sequential(*layers, nn.Linear(width, 2))


class EpochClock:
    """Each epoch's wall seconds and this process's CPU seconds (``--clock cpu``)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def begin(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def end(self) -> None:
        self.wall.append(time.perf_counter() - self._wall)
        self.cpu.append(time.process_time() - self._cpu)

    def on_event(self, event: str, data: Any) -> None:
        """As a Trainer callback: CPU seconds from one epoch end to the next (the first from
        train_begin), so that gathering the epoch and validating it count as they do in the
        history's time_per_epoch."""
        if event == "train_begin":
            self.begin()
        elif event == "epoch_end":
            self.end()
            self.begin()


# ---------------------------------------------------------------------- sides

def raw(p: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    xt, yt, xv, yv = (torch.from_numpy(a) for a in arrays(p["rows"]))
    torch.manual_seed(SEED)
    model = torch_mlp()
    opt = torch.optim.Adam(model.parameters(), LR)
    bs, clock = p["batch_size"], EpochClock()
    for _ in range(p["epochs"]):
        clock.begin()
        model.train()
        total = torch.zeros(())
        correct = torch.zeros((), dtype=torch.long)
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), bs):
            idx = perm[i:i + bs]
            xb, yb = xt[idx], yt[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(xb)
            correct += (out.argmax(1) == yb).sum()
        model.eval()
        with torch.no_grad():
            vo = model(xv)
            val_loss, val_acc = F.cross_entropy(vo, yv).item(), (vo.argmax(1) == yv).float().mean().item()
        train_loss, train_acc = float(total) / len(xt), int(correct) / len(xt)   # the epoch's metrics on the host
        clock.end()
    return {"epoch_seconds": clock.wall, "epoch_cpu_seconds": clock.cpu, "train_samples": len(xt),
            "versions": {"torch": torch.__version__},
            "extras": {"threads": torch.get_num_threads(), "val_loss": val_loss, "val_accuracy": val_acc,
                       "train_loss": train_loss, "train_accuracy": train_acc}}


def trainer_config(p: dict[str, Any], backend: str, **overrides: Any) -> dict[str, Any]:
    return {"backend": backend, "device": "cpu", "seed": SEED, "epochs": p["epochs"], "batch_size": p["batch_size"],
            "model_type": "mlp", "hidden_units": HIDDEN, "dropout_rate": DROPOUT, "learning_rate": LR,
            "optimizer": "adam", "learning_rate_scheduler": "none", "early_stopping": False,
            "validation_split": 0.2, "target_column": "label", **overrides}


def _trainer_result(run: Any, clock: EpochClock, versions: dict[str, str], **extras: Any) -> dict[str, Any]:
    if run.state.value != "completed":
        raise RuntimeError(f"the run ended {run.state.value}: {run.reason}")
    last = run.history[-1]
    return {"epoch_seconds": [h["time_per_epoch"] for h in run.history], "epoch_cpu_seconds": clock.cpu,
            "train_samples": len(run.data.train_index),
            "versions": versions, "extras": {"val_loss": last["val_loss"], "val_accuracy": last["val_accuracy"],
                                             **extras}}


def _torch_versions() -> dict[str, str]:
    import torch
    return {"torch": torch.__version__}


def trainer_torch(p: dict[str, Any]) -> dict[str, Any]:
    from trainer import Trainer
    from trainer.datasets import make_benchmark
    clock = EpochClock()
    run = Trainer(trainer_config(p, "torch"), make_benchmark(p["rows"], FEATURES, seed=SEED),
                  callbacks=[clock.on_event]).fit()
    return _trainer_result(run, clock, _torch_versions(), threads=run.backend.train_threads)


def trainer_tensorflow(p: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf
    from trainer import Trainer
    from trainer.datasets import make_benchmark
    clock = EpochClock()
    run = Trainer(trainer_config(p, "tensorflow"), make_benchmark(p["rows"], FEATURES, seed=SEED),
                  callbacks=[clock.on_event]).fit()
    return _trainer_result(run, clock, {"tensorflow": tf.__version__})


def keras_fit(p: dict[str, Any]) -> dict[str, Any]:
    import keras
    xt, yt, xv, yv = arrays(p["rows"])
    keras.utils.set_random_seed(SEED)
    layers: list[Any] = [keras.Input((FEATURES,))]
    for units in HIDDEN:
        layers += [keras.layers.Dense(units, activation="relu"), keras.layers.Dropout(DROPOUT)]
    model = keras.Sequential(layers + [keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(LR),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    clock = EpochClock()

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            clock.begin()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            clock.end()

    history = model.fit(xt, yt, batch_size=p["batch_size"], epochs=p["epochs"], validation_data=(xv, yv),
                        callbacks=[Timer()], verbose=0)
    return {"epoch_seconds": clock.wall, "epoch_cpu_seconds": clock.cpu, "train_samples": len(xt),
            "versions": {"keras": keras.__version__},
            "extras": {"val_loss": history.history["val_loss"][-1]}}


def skorch_fit(p: dict[str, Any]) -> dict[str, Any]:
    import skorch
    import torch
    from skorch import NeuralNetClassifier
    from skorch.callbacks import Callback
    from skorch.dataset import Dataset
    from skorch.helper import predefined_split
    xt, yt, xv, yv = arrays(p["rows"])
    torch.manual_seed(SEED)
    clock = EpochClock()

    class Timer(Callback):
        def on_epoch_begin(self, net: Any, **kw: Any) -> None:
            clock.begin()

        def on_epoch_end(self, net: Any, **kw: Any) -> None:
            clock.end()

    net = NeuralNetClassifier(torch_mlp(), criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=LR,
                              batch_size=p["batch_size"], max_epochs=p["epochs"], callbacks=[Timer()], verbose=0,
                              train_split=predefined_split(Dataset(xv, yv)), iterator_train__shuffle=True)
    net.fit(xt, yt)
    return {"epoch_seconds": clock.wall, "epoch_cpu_seconds": clock.cpu, "train_samples": len(xt),
            "versions": {"skorch": skorch.__version__, "torch": torch.__version__}}


def lightning_fit(p: dict[str, Any]) -> dict[str, Any]:
    import lightning as L
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset
    xt, yt, xv, yv = (torch.from_numpy(a) for a in arrays(p["rows"]))
    torch.manual_seed(SEED)
    clock = EpochClock()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch_mlp()

        def training_step(self, batch: Any, i: int) -> Any:
            x, y = batch
            out = self.net(x)
            loss = F.cross_entropy(out, y)
            self.log("train_loss", loss, on_epoch=True, on_step=False)
            self.log("train_acc", (out.argmax(1) == y).float().mean(), on_epoch=True, on_step=False)
            return loss

        def validation_step(self, batch: Any, i: int) -> None:
            x, y = batch
            out = self.net(x)
            self.log("val_loss", F.cross_entropy(out, y))
            self.log("val_acc", (out.argmax(1) == y).float().mean())

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), LR)

    class Timer(L.Callback):
        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            clock.begin()

        def on_validation_epoch_end(self, trainer: Any, module: Any) -> None:
            if not trainer.sanity_checking:
                clock.end()

    train = DataLoader(TensorDataset(xt, yt), batch_size=p["batch_size"], shuffle=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=4096)
    trainer = L.Trainer(max_epochs=p["epochs"], callbacks=[Timer()], enable_progress_bar=False, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                        accelerator="cpu")
    trainer.fit(Module(), train, val)
    return {"epoch_seconds": clock.wall, "epoch_cpu_seconds": clock.cpu, "train_samples": len(xt),
            "versions": {"lightning": L.__version__, "torch": torch.__version__}}


async def run_panel(p: dict[str, Any], clock: EpochClock, show: bool = False,
                    on_epoch: Callable[[Any, dict[str, Any]], None] = lambda panel, change: None) -> Any:
    """Train ``p``'s run from a TrainingPanel (shown first when ``show``) and return the panel;
    ``on_epoch(panel, change)`` hears every change of its epoch counter. Used outside and inside a kernel."""
    from epoch_widgets import TrainingPanel
    from trainer.datasets import make_benchmark

    config = trainer_config(p, "torch")
    config.pop("backend")
    panel = TrainingPanel(data=make_benchmark(p["rows"], FEATURES, seed=SEED), **config)
    panel.observe(lambda change: on_epoch(panel, change), "current_epoch")
    if show:
        panel.show()
    panel.start()
    run = await panel.wait_started()     # built in a worker thread, outside the epochs timed
    run.add_callback(clock.on_event)
    await panel.wait()
    return panel


def trainer_panel(p: dict[str, Any]) -> dict[str, Any]:
    """The torch trainer run by a TrainingPanel. Outside a kernel widgets talk to the comm package's
    stand-in comm; counting what it would send gives the panel's message rate."""
    import asyncio
    from collections import Counter

    import comm
    from comm import DummyComm

    sent: Counter = Counter()

    class CountingComm(DummyComm):
        def publish_msg(self, msg_type: str, *args: Any, **kwargs: Any) -> None:
            sent[msg_type] += 1

    comm.create_comm = lambda *a, **kw: CountingComm(*a, **kw)     # before any widget exists
    marks: dict[int, tuple[float, int, int]] = {}
    clock = EpochClock()

    def mark(panel: Any, change: dict[str, Any]) -> None:
        marks.setdefault(change["new"], (time.perf_counter(), sent["comm_msg"], panel.redraw.throttle.flushes))

    panel = asyncio.run(run_panel(p, clock, on_epoch=mark))
    extras: dict[str, Any] = {"threads": panel.run.backend.train_threads, "messages_per_run": sent["comm_msg"]}
    # Steady rates between the first and the last epoch end, without the start's and end's messages.
    first, last = min(marks), max(marks)
    if last > first:
        (t0, m0, f0), (t1, m1, f1) = marks[first], marks[last]
        extras.update(messages_per_s=(m1 - m0) / (t1 - t0), refreshes_per_s=(f1 - f0) / (t1 - t0))
    return _trainer_result(panel.run, clock, _torch_versions(), **extras)


# The cells the kernel sides run: the same run as trainer_torch and trainer_panel, in a kernel that a
# client (this process, standing in for the notebook server) talks to over ZeroMQ.
_KERNEL_PRELUDE = """
import json, sys
sys.path.insert(0, {bench_dir!r})
from sides import EpochClock, FEATURES, SEED, RESULT_PREFIX, run_panel, trainer_config, _trainer_result, _torch_versions
p = json.loads({params!r})
clock = EpochClock()
"""
_KERNEL_CELLS = {
    "bare": """
from trainer import Trainer
from trainer.datasets import make_benchmark
run = Trainer(trainer_config(p, "torch"), make_benchmark(p["rows"], FEATURES, seed=SEED), callbacks=[clock.on_event])
run.start()
await run.wait()
""",
    "panel": """
run = (await run_panel(p, clock, show=True)).run
""",
}
_KERNEL_RESULT = """
print(RESULT_PREFIX + json.dumps(_trainer_result(run, clock, _torch_versions(), threads=run.backend.train_threads)))
"""


def _kernel_side(cell: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def side(p: dict[str, Any]) -> dict[str, Any]:
        from collections import Counter

        from jupyter_client.manager import start_new_kernel

        code = (_KERNEL_PRELUDE.format(bench_dir=str(Path(__file__).resolve().parent), params=json.dumps(p))
                + _KERNEL_CELLS[cell] + _KERNEL_RESULT)
        received: Counter = Counter()
        text: list[str] = []
        errors: list[str] = []

        def on_message(msg: dict[str, Any]) -> None:
            kind = msg["msg_type"]
            received[kind] += 1
            if kind == "stream":
                text.append(msg["content"]["text"])
            elif kind == "error":
                errors.append("\n".join(msg["content"]["traceback"]))

        km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
        try:
            reply = kc.execute_interactive(code, output_hook=on_message, timeout=1500)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        lines = [ln for ln in "".join(text).splitlines() if ln.startswith(RESULT_PREFIX)]
        if reply["content"]["status"] != "ok" or not lines:
            raise RuntimeError(f"the kernel's cell failed: {errors[-1] if errors else ''.join(text)[-2000:]}")
        result = json.loads(lines[-1][len(RESULT_PREFIX):])
        result["extras"]["messages_per_run"] = received["comm_msg"]
        return result
    return side


def panel_refresh(p: dict[str, Any]) -> dict[str, Any]:
    """Bytes and milliseconds of one curves refresh after 50 and after 10,000 epochs."""
    import comm
    import numpy as np
    from comm import DummyComm

    nbytes = [0]

    class CountingComm(DummyComm):
        def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None,
                        **kw: Any) -> None:
            if msg_type == "comm_msg":
                nbytes[0] += len(json.dumps(data, default=str)) + sum(memoryview(b).nbytes for b in buffers or ())

    comm.create_comm = lambda *a, **kw: CountingComm(*a, **kw)
    from epoch_widgets.charts.curves import Curves

    def cost(epochs: int, repeats: int = 20) -> tuple[float, float]:
        curves = Curves()
        curves.begin_run(classification=True)
        entry = {"train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5,
                 "learning_rate": 1e-3, "time_per_epoch": 0.01}
        noise = np.random.default_rng(0).standard_normal(epochs + repeats)
        for e in range(1, epochs + 1):
            curves.add_epoch({**entry, "epoch": e, "val_loss": 1 / e + 0.01 * noise[e - 1],
                              "train_loss": 1 / e + 0.02 * noise[-e]}, improved=e % 10 == 0)
        curves.render()
        nbytes[0] = 0
        began = time.perf_counter()
        for r in range(repeats):
            curves.add_epoch({**entry, "epoch": epochs + r + 1}, improved=False)
            curves.render()
        return nbytes[0] / repeats, (time.perf_counter() - began) / repeats * 1000

    (b50, ms50), (b10k, ms10k) = cost(50), cost(10_000)
    return {"epoch_seconds": [0.0], "train_samples": 0, "extras": {
        "bytes_50": b50, "ms_50": ms50, "bytes_10000": b10k, "ms_10000": ms10k}}


def _checkpoint_side(checkpoints: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def side(p: dict[str, Any]) -> dict[str, Any]:
        from trainer import Trainer
        from trainer.datasets import make_benchmark
        with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp:
            config = trainer_config(p, "torch", output_path=str(Path(tmp) / "run"), checkpoints=checkpoints)
            clock = EpochClock()
            run = Trainer(config, make_benchmark(p["rows"], FEATURES, seed=SEED), callbacks=[clock.on_event]).fit()
            extras: dict[str, Any] = {"threads": run.backend.train_threads}
            writer = run._checkpoints
            if writer is not None:
                # One write of the finished run's checkpoint (state, files, fsync, rotation), timed
                # apart from the epochs, whose noise would hide a few milliseconds.
                times = []
                for _ in range(15):
                    began = time.perf_counter()
                    writer.write()
                    times.append(time.perf_counter() - began)
                files = sorted((Path(tmp) / "run" / "checkpoints").glob("ckpt-*.zip"))
                extras.update(write_ms=statistics.median(times) * 1000,
                              checkpoint_bytes=files[-1].stat().st_size if files else 0)
            return _trainer_result(run, clock, _torch_versions(), **extras)
    return side


SIDES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "raw": raw,
    "torch": trainer_torch,
    "tensorflow": trainer_tensorflow,
    "keras": keras_fit,
    "skorch": skorch_fit,
    "lightning": lightning_fit,
    "torch-panel": trainer_panel,
    "kernel-torch": _kernel_side("bare"),
    "kernel-panel": _kernel_side("panel"),
    "torch-output": _checkpoint_side(False),
    "torch-checkpoints": _checkpoint_side(True),
    "panel-refresh": panel_refresh,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    params = json.loads(argv[0])
    side = SIDES.get(params.get("side", ""))
    if side is None:
        print(f"unknown side {params.get('side')!r}; sides: {', '.join(SIDES)}", file=sys.stderr)
        return 2
    result = side(params)
    result["pid"] = os.getpid()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
