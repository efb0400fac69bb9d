"""TensorFlow on several devices of one machine: ``tf.distribute.MirroredStrategy``.

The TensorFlow backend's compiled slice loop is kept; only its training step changes. Each batch
is the same global batch as on one device; replica ``r`` of ``N`` trains on the ``r``-th of ``N``
equal slices, its loss is its samples' summed loss divided by the *global* batch size, and the
strategy's gradient all-reduce sums the replicas' gradients: the step is the mean gradient over
the whole batch, as on one device. Model, optimiser, metric sums and a copy of the data live on
every replica (mirrored variables); validation and prediction run on the first device.

Logical CPU devices (``device='cpu'``) exist to test this without GPUs. TensorFlow can create them
only before its runtime starts in the process, so they must be requested first.
"""
from __future__ import annotations

from typing import Any, Optional

import keras
import tensorflow as tf

from ..backends.tf_backend import TFBackend
from ..config import ConfigError, TrainingConfig
from ..data import PreparedData
from .plan import DevicePlan


def replica_devices(plan: DevicePlan) -> list[str]:
    """TensorFlow device names for the plan, creating logical CPU devices when it asks for them."""
    if plan.device_type == "cuda":
        return [f"/GPU:{i}" for i in plan.device_ids]
    n = plan.world_size
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu) or []
    if len(configured) < n:
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError:
            have = len(tf.config.list_logical_devices("CPU"))
            if have < n:
                raise ConfigError.single(
                    "devices", n, f"TensorFlow already started in this process with {have} CPU device(s) and cannot "
                                  f"add more; {n} CPU replicas must be requested before TensorFlow runs anything "
                                  f"(restart the kernel and start this run first), or use devices=1. GPUs need no such step") from None
    return [f"/CPU:{i}" for i in range(n)]


def _clone_into_scope(model: keras.Model) -> keras.Model:
    """A user's model rebuilt inside the strategy's scope (its variables then mirror) with its weights."""
    try:
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
    except Exception as exc:
        raise ConfigError.single(
            "model", type(model).__name__,
            f"could not be rebuilt for {type(exc).__name__}: {exc}; with devices > 1 a keras.Model must be "
            f"clonable (functional or Sequential, or a subclass with get_config), or use devices=1") from None
    return clone


class MirroredTFBackend(TFBackend):
    """``TFBackend`` whose training step runs on every replica of a MirroredStrategy."""

    def __init__(self, config: TrainingConfig, data: PreparedData, seed: int, model: Optional[keras.Model],
                 plan: DevicePlan):
        self.plan = plan
        self.strategy = tf.distribute.MirroredStrategy(replica_devices(plan))
        self.replicas = self.strategy.num_replicas_in_sync
        first = config.replace(device=plan.rank_device(0), devices=1)
        with self.strategy.scope():
            if model is not None and isinstance(model, keras.Model):
                model = _clone_into_scope(model)
            super().__init__(first, data, seed, model)
            # Each replica gathers its batch slice from its own copy of the data.
            self._replica_x = tf.Variable(self.x, trainable=False)
            self._replica_y = tf.Variable(self.y, trainable=False)

    @property
    def device_name(self) -> str:
        return self.plan.describe()

    def _train_step(self, ids: tf.Tensor) -> None:
        sums = self.strategy.run(self._replica_step, args=(ids,))
        total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None)
        self._loss_sum.assign_add(total[0])
        self._score_sum.assign_add(total[1])

    def _replica_step(self, ids: tf.Tensor) -> tf.Tensor:
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
        n = tf.size(ids, out_type=tf.int64)
        lo, hi = n * replica // self.replicas, n * (replica + 1) // self.replicas
        has_samples = hi > lo
        # A replica left without a sample of a short last batch runs one weighted 0: all must join.
        mine = tf.cond(has_samples, lambda: ids[lo:hi], lambda: ids[:1])
        weight = tf.cast(has_samples, tf.float32)
        if self.window is None:
            xb = tf.gather(self._replica_x, mine)
        else:
            xb = tf.gather(self._replica_x, mine[:, None] + self._steps)
        yb = tf.gather(self._replica_y, mine + self._offset)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            out = self.model(xb, training=True)
            per, score = self._loss_terms(out, yb)
            loss_sum = tf.reduce_sum(per) * weight
            # Summed over replicas, this is the global batch's mean loss; each replica holds
            # the whole regularisation loss, so it counts 1/N of it.
            total = loss_sum / tf.cast(n, tf.float32)
            if self.model.losses:
                total += tf.add_n([tf.cast(r, tf.float32) for r in self.model.losses]) / self.replicas
            scaled = self.optimizer.scale_loss(total)
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        return tf.stack([tf.cast(loss_sum, tf.float64), score * tf.cast(weight, tf.float64)])


def create(config: TrainingConfig, data: PreparedData, seed: int, model: Any, plan: DevicePlan) -> MirroredTFBackend:
    return MirroredTFBackend(config, data, seed, model, plan)
