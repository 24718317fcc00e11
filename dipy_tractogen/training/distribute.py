"""Training on several devices and machines: strategies, cluster, training loop.

``train_autoencoder(..., distribute=...)`` and ``dipy_train_tractoencoder
--distribute`` run the recipe under one of TensorFlow's ``tf.distribute``
strategies (the engine of the TensorFlow backend; the models themselves use
``keras.ops`` only):

- ``"none"``: one device (the caller's strategy scope, if any, is kept);
- ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over every visible GPU of
  the machine, or over ``devices`` logical CPU devices (tests, benchmarks);
  trained with Keras' own ``fit``;
- ``"multiworker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the
  cluster of the standard ``TF_CONFIG`` environment variable
  (:func:`read_tf_config`).

Keras 3.15 ``fit`` fails under a multi-worker strategy (keras-team/keras
#20585: its symbolic build reduces the first distributed batch of eager
tensors, which ``CollectiveAllReduceStrategy`` refuses). A multi-worker run
is therefore trained by :class:`StrategyLoop`, this module's own loop: each
step is ``strategy.run`` of a ``GradientTape`` pass through the compiled
model (``model.compute_loss``: the recipe's summed loss and the model's
summed regularisers, as ``fit`` computes them) and the compiled optimiser's
``apply_gradients`` (which all-reduces the gradients), and the logged losses
are ``strategy.reduce`` sums. The loop drives the same callbacks as ``fit``
(the checkpoint of every epoch, TensorBoard, early stopping, the time
budget), so checkpoints, resume and the model card are the trainer's own.

In a multi-worker run every worker runs the same command; :class:`Distribution`
tells them apart. The chief (the ``chief`` task, else worker 0) alone writes
the model, its card, the report and the logs; the other workers write into a
temporary folder that is removed at the end. The chief's checkpoint is the
truth: at start it broadcasts its weights, optimiser state and position to
the others (:meth:`Distribution.broadcast`), so that a run killed on any
worker resumes when every worker's command is run again, with no file
system shared between the machines, and each epoch the chief's decision to
stop (early stopping, time budget) is broadcast too, so that no worker waits
alone in a collective.

This module imports TensorFlow inside its functions: the command checks
``--distribute`` and ``TF_CONFIG`` (:func:`check_distribute`) before
TensorFlow starts.
"""

import contextlib
import json
import os
from dataclasses import dataclass, field

import numpy as np

from dipy_tractogen._checks import check_int
from dipy_tractogen.errors import InputError, TractogenError

__all__ = [
    "DISTRIBUTE",
    "ClusterInfo",
    "read_tf_config",
    "check_distribute",
    "Distribution",
    "make_distribution",
    "StrategyLoop",
]

#: the values of ``distribute``
DISTRIBUTE = ("none", "mirrored", "multiworker")

#: task types of a ``TF_CONFIG`` cluster that train (MultiWorkerMirroredStrategy)
_TRAINING_JOBS = ("chief", "worker")


@dataclass(frozen=True)
class ClusterInfo:
    """This process's place in a ``TF_CONFIG`` cluster.

    Attributes
    ----------
    n_workers : int
        Training tasks of the cluster (``chief`` and ``worker`` jobs).
    worker_index : int
        This task's rank among them (the chief first, then the workers).
    is_chief : bool
        Whether this task writes the outputs: the ``chief`` task, or worker 0
        of a cluster without one.
    task_type : str
    task_index : int
    addresses : tuple of str
        ``host:port`` of every training task, in rank order.
    """

    n_workers: int
    worker_index: int
    is_chief: bool
    task_type: str
    task_index: int
    addresses: tuple = field(default_factory=tuple)


def _address_ok(address):
    if not isinstance(address, str) or ":" not in address:
        return False
    port = address.rsplit(":", 1)[1]
    return port.isdigit() and 0 < int(port) < 65536


def read_tf_config(environ=None):
    """Read and check the ``TF_CONFIG`` environment variable.

    ``TF_CONFIG`` is TensorFlow's description of a cluster, the same JSON on
    every task but for its ``task``::

        {"cluster": {"worker": ["host1:12345", "host2:12345"]},
         "task": {"type": "worker", "index": 0}}

    A ``chief`` job (one address) may come first; parameter servers
    (``ps``) and ``evaluator`` tasks are not used by a multi-worker mirrored
    run and are refused.

    Parameters
    ----------
    environ : mapping, optional
        The environment (default ``os.environ``).

    Returns
    -------
    ClusterInfo

    Raises
    ------
    InputError
        ``TF_CONFIG`` missing, not JSON, without a cluster or a task, with
        malformed addresses, or whose task is not in its cluster (one line).
    """
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "")
    hint = "(see doc/scale-out.md)"
    if not text.strip():
        raise InputError(
            "--distribute multiworker reads the cluster from the TF_CONFIG "
            f"environment variable, which is not set {hint}"
        )
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise InputError(f"TF_CONFIG is not valid JSON ({exc}) {hint}") from None
    if not isinstance(config, dict):
        raise InputError(f"TF_CONFIG must be a JSON object {hint}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise InputError(f"TF_CONFIG has no 'cluster' {hint}")
    if not isinstance(task, dict):
        raise InputError(f"TF_CONFIG has no 'task' {hint}")
    other = sorted(k for k in cluster if k not in _TRAINING_JOBS)
    if other:
        raise InputError(
            f"TF_CONFIG's cluster has {', '.join(other)} job(s); a multi-worker "
            "mirrored run uses only 'chief' and 'worker' jobs"
        )
    addresses = []
    for job in _TRAINING_JOBS:
        tasks = cluster.get(job, [])
        if not isinstance(tasks, list) or not all(_address_ok(a) for a in tasks):
            raise InputError(
                f"TF_CONFIG's cluster job {job!r} must be a list of 'host:port' "
                f"addresses, got {tasks!r}"
            )
        addresses.extend(tasks)
    n_chief = len(cluster.get("chief", []))
    if n_chief > 1:
        raise InputError("TF_CONFIG's cluster has more than one chief")
    if not addresses:
        raise InputError(f"TF_CONFIG's cluster lists no worker {hint}")
    if len(set(addresses)) != len(addresses):
        raise InputError("TF_CONFIG's cluster lists an address twice")
    kind, index = task.get("type"), task.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        raise InputError(f"TF_CONFIG's task index must be an integer, got {index!r}")
    jobs = cluster.get(kind, []) if kind in _TRAINING_JOBS else []
    if not 0 <= index < len(jobs):
        raise InputError(
            f"TF_CONFIG's task {kind} {index} is not in its cluster "
            f"({', '.join(f'{j}: {len(cluster.get(j, []))}' for j in cluster)})"
        )
    rank = index if kind == "chief" else n_chief + index
    return ClusterInfo(
        n_workers=len(addresses),
        worker_index=rank,
        is_chief=rank == 0,
        task_type=kind,
        task_index=index,
        addresses=tuple(addresses),
    )


def _keras_backend(environ):
    """The Keras backend a process will use, without importing Keras."""
    name = environ.get("KERAS_BACKEND", "")
    if name:
        return name
    path = os.path.join(
        environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")),
        "keras.json",
    )
    with contextlib.suppress(OSError, ValueError, AttributeError):
        with open(path) as f:
            return json.load(f).get("backend", "tensorflow")
    return "tensorflow"


def check_distribute(distribute="none", devices=0, *, environ=None):
    """Check the distribution options of a run, before TensorFlow starts.

    Parameters
    ----------
    distribute : {"none", "mirrored", "multiworker"}, optional
    devices : int, optional
        ``mirrored`` only: 0 uses every visible GPU (one CPU device without
        GPUs); N > 0 uses the first N GPUs, or N logical CPU devices on a
        machine without GPUs.
    environ : mapping, optional
        The environment (default ``os.environ``): ``TF_CONFIG``,
        ``KERAS_BACKEND``.

    Returns
    -------
    cluster : ClusterInfo or None
        For ``multiworker``, this task's place in the cluster.

    Raises
    ------
    InputError
        An unknown value, ``devices`` without ``mirrored``, another Keras
        backend than TensorFlow, an invalid ``TF_CONFIG``.
    """
    environ = os.environ if environ is None else environ
    if distribute not in DISTRIBUTE:
        raise InputError(
            f"unknown distribute {distribute!r}; use one of {', '.join(DISTRIBUTE)}"
        )
    devices = check_int(devices, "devices", minimum=0)
    if devices and distribute != "mirrored":
        raise InputError("devices applies to distribute='mirrored' only")
    if distribute == "none":
        return None
    backend = _keras_backend(environ)
    if backend != "tensorflow":
        raise InputError(
            f"distribute={distribute!r} runs on TensorFlow's tf.distribute; the "
            f"Keras backend is {backend!r} (set KERAS_BACKEND=tensorflow)"
        )
    if distribute == "multiworker":
        return read_tf_config(environ)
    return None


# --------------------------------------------------------------------------
# the strategy of a run
# --------------------------------------------------------------------------


@dataclass
class Distribution:
    """The strategy of a training run and this process's part in it.

    Attributes
    ----------
    kind : {"none", "mirrored", "multiworker"}
    strategy : tf.distribute.Strategy
    n_workers, worker_index : int
        Workers of the cluster (1 on one machine) and this one's rank.
    is_chief : bool
        Whether this process writes the outputs.
    external : bool
        The strategy is the caller's (its scope was entered by the caller).
    """

    kind: str
    strategy: object
    n_workers: int = 1
    worker_index: int = 0
    is_chief: bool = True
    external: bool = False

    @property
    def replicas(self):
        """Replicas in sync, over every worker."""
        return int(self.strategy.num_replicas_in_sync)

    @property
    def local_replicas(self):
        """Replicas of this worker."""
        return self.replicas // self.n_workers

    @property
    def multi_worker(self):
        """Whether several processes train together (collectives between them)."""
        return self.n_workers > 1

    def scope(self):
        """The strategy's scope (nothing to enter for a caller's strategy)."""
        if self.external:
            return contextlib.nullcontext()
        return self.strategy.scope()

    def describe(self):
        """The card's ``distribution`` entry."""
        return {
            "strategy": self.kind,
            "replicas": self.replicas,
            "workers": self.n_workers,
        }

    # -------------------------------------------------------------- collectives
    def per_replica(self, value_fn):
        """A distributed value: ``value_fn(local_replica)`` on each local replica."""
        w, local = self.worker_index, self.local_replicas

        def fn(ctx):
            r = int(ctx.replica_id_in_sync_group) - w * local
            if not 0 <= r < local:  # pragma: no cover - a strategy's own order
                raise TractogenError(
                    f"replica {ctx.replica_id_in_sync_group} is not one of worker "
                    f"{w}'s {local} replicas"
                )
            return value_fn(r)

        return self.strategy.experimental_distribute_values_from_function(fn)

    def all_sum(self, values):
        """The sum over the workers of each worker's ``values`` (float64).

        Parameters
        ----------
        values : array-like
            This worker's contribution (the same shape on every worker).

        Returns
        -------
        ndarray float64
        """
        values = np.asarray(values, dtype=np.float64)
        if not self.multi_worker:
            return values
        import tensorflow as tf

        zeros = np.zeros_like(values)
        pv = self.per_replica(
            lambda r: tf.constant(values if r == 0 else zeros, dtype=tf.float64)
        )
        return np.asarray(self.strategy.reduce("SUM", pv, axis=None))

    def broadcast(self, arrays):
        """The chief's ``arrays`` on every worker (exact: float64 sums of zeros).

        Parameters
        ----------
        arrays : list of ndarray
            This worker's arrays (their shapes and dtypes, the same on every
            worker; the values of the chief are kept).

        Returns
        -------
        list of ndarray
            The chief's values, in the given dtypes.
        """
        arrays = [np.asarray(a) for a in arrays]
        if not self.multi_worker:
            return arrays
        flat = np.concatenate(
            [a.astype(np.float64).ravel() for a in arrays] or [np.zeros(0)]
        )
        summed = self.all_sum(flat if self.is_chief else np.zeros_like(flat))
        out, start = [], 0
        for a in arrays:
            out.append(summed[start : start + a.size].reshape(a.shape).astype(a.dtype))
            start += a.size
        return out

    def agree(self, error=None):
        """Stop every worker when one failed: a collective check point.

        Each worker says whether it failed (``error``); if any did, the
        failed one raises its error and the others a one-line
        :class:`~dipy_tractogen.errors.TractogenError`, instead of waiting
        for it in the next collective.
        """
        if not self.multi_worker:
            if error is not None:
                raise error
            return
        failed = self.all_sum(np.eye(self.n_workers)[self.worker_index] * bool(error))
        if error is not None:
            raise error
        if failed.any():
            bad = ", ".join(str(i) for i in np.flatnonzero(failed))
            raise TractogenError(
                f"worker(s) {bad} of the cluster failed (see their log); "
                f"worker {self.worker_index} stops too"
            )


def _logical_cpus(n):
    """Split the CPU into ``n`` logical devices (before TensorFlow starts)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration()] * n
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == n:
        return [d.name for d in tf.config.list_logical_devices("CPU")]
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError:
        raise InputError(
            f"cannot split the CPU into {n} logical devices: TensorFlow has "
            "already started in this process (configure them first)"
        ) from None
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_distribution(distribute=None, *, devices=0):
    """The :class:`Distribution` of a run.

    Parameters
    ----------
    distribute : {"none", "mirrored", "multiworker"}, tf.distribute.Strategy or None
        None: the strategy whose scope the caller entered (the default
        strategy otherwise). A strategy object is used as given.
    devices : int, optional
        As for :func:`check_distribute`.

    Returns
    -------
    Distribution

    Raises
    ------
    InputError
        As :func:`check_distribute`; a Keras backend other than TensorFlow;
        more GPUs asked than visible; logical CPUs asked after TensorFlow
        started.
    """
    if isinstance(distribute, str) or distribute is None:
        cluster = check_distribute(distribute or "none", devices)
    else:
        cluster = None
    import keras

    if keras.backend.backend() != "tensorflow":
        if distribute in (None, "none"):
            return Distribution("none", _NoStrategy(), external=True)
        raise InputError(
            f"distribute={distribute!r} runs on TensorFlow's tf.distribute; the "
            f"Keras backend is {keras.backend.backend()!r}"
        )
    import tensorflow as tf

    if distribute is None or not isinstance(distribute, str):
        strategy = distribute or tf.distribute.get_strategy()
        external = distribute is None
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            resolver = strategy.cluster_resolver
            n = max(1, len(resolver.cluster_spec().as_dict().get("worker", [])))
            n += len(resolver.cluster_spec().as_dict().get("chief", []))
            task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
            rank = task_id + (
                len(resolver.cluster_spec().as_dict().get("chief", []))
                if task_type == "worker"
                else 0
            )
            return Distribution(
                "multiworker",
                strategy,
                n_workers=n,
                worker_index=rank,
                is_chief=rank == 0,
                external=external,
            )
        kind = "none" if strategy.num_replicas_in_sync == 1 else "mirrored"
        return Distribution(kind, strategy, external=external)
    if tf.distribute.has_strategy():
        raise InputError(
            f"distribute={distribute!r} makes its own strategy: call it outside "
            "another strategy's scope"
        )
    if distribute == "none":
        return Distribution("none", tf.distribute.get_strategy())
    if distribute == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            if devices > len(gpus):
                raise InputError(
                    f"devices={devices} but {len(gpus)} GPU(s) are visible"
                )
            names = [f"/gpu:{i}" for i in range(devices or len(gpus))]
        elif devices:
            names = _logical_cpus(devices)
        else:
            from dipy.utils.logging import logger

            logger.warning(
                "distribute='mirrored' without a GPU: one CPU replica (use "
                "devices=N for N logical CPU devices)"
            )
            names = ["/cpu:0"]
        return Distribution("mirrored", tf.distribute.MirroredStrategy(names))
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return Distribution(
        "multiworker",
        strategy,
        n_workers=cluster.n_workers,
        worker_index=cluster.worker_index,
        is_chief=cluster.is_chief,
    )


class _NoStrategy:
    """Stands for a strategy on a backend without ``tf.distribute``."""

    num_replicas_in_sync = 1

    def scope(self):  # pragma: no cover - never entered (external)
        return contextlib.nullcontext()


# --------------------------------------------------------------------------
# the training loop
# --------------------------------------------------------------------------


class StrategyLoop:
    """The recipe's training steps under a strategy, without ``fit``.

    Parameters
    ----------
    model : keras.Model
        Built and compiled under ``distribution``'s scope (its loss, metrics,
        optimiser and schedule are used as they are).
    distribution : Distribution
    metric : callable
        ``metric(y, y_pred) -> (B,)``: the per-streamline loss logged as
        ``streamline_loss`` (the compiled ``StreamlineLoss``' function).
    jit_compile : bool, optional
        XLA-compile each replica's forward and backward pass (the gradient
        all-reduce and the update stay outside XLA).

    Notes
    -----
    Batches come as this worker's share of the global batch
    (``sequence.local_batch(i)``); each local replica takes its
    :func:`~dipy_tractogen.training.data.share_bounds` rows. Losses are sums
    over the streamlines, so how rows are split does not change the step
    (except the attribute-regularised VAE's pair term, see
    ``doc/training.md``). The logs are those of ``fit``: ``loss`` is the
    batch-size-weighted mean of the global batch's summed loss,
    ``streamline_loss`` the mean per-streamline error.
    """

    def __init__(self, model, distribution, *, metric, jit_compile=False):
        import tensorflow as tf

        self.model, self.dist, self.metric = model, distribution, metric
        replicas = float(distribution.replicas)

        def grads(x, y):
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=True)
                scaled = model.optimizer.scale_loss(loss)
            g = tape.gradient(scaled, model.trainable_variables)
            return g, self._sums(loss, y, y_pred, replicas)

        grads_fn = tf.function(grads, jit_compile=True) if jit_compile else grads

        def replica_train(batch):
            g, sums = grads_fn(*batch)
            model.optimizer.apply_gradients(
                zip(g, model.trainable_variables, strict=True)
            )
            return sums

        def replica_test(batch):
            x, y = batch
            y_pred = model(x, training=False)
            loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
            return self._sums(loss, y, y_pred, replicas)

        strategy = distribution.strategy

        def distributed(fn):
            def step(batch):
                out = strategy.run(fn, args=(batch,))
                return strategy.reduce("SUM", out, axis=None)

            return tf.function(step, reduce_retracing=True)

        self._train = distributed(replica_train)
        self._test = distributed(replica_test)

    def _sums(self, loss, y, y_pred, replicas):
        """``[sum of per-streamline errors, loss x replicas x rows, rows]``."""
        from keras import ops

        n = ops.cast(ops.shape(y)[0], "float32")
        per = self.metric(y, ops.cast(y_pred, "float32"))
        logged = ops.cast(loss, "float32") * replicas * n
        return ops.stack([ops.sum(per), logged, n])

    def _per_replica(self, batch):
        """This worker's batch ``(x, y)`` as a distributed value: each local
        replica takes its :func:`share_bounds` rows."""
        import tensorflow as tf

        # training.data imports Keras: this module is read before TensorFlow
        # starts (the command's checks)
        from dipy_tractogen.training.data import share_bounds, slice_batch

        rows = len(batch[1])
        local = self.dist.local_replicas

        def part(r):
            a, b = share_bounds(rows, r, local)
            return tuple(_to_tensor(tf, slice_batch(item, a, b)) for item in batch[:2])

        return self.dist.per_replica(part)

    def train_step(self, batch):
        """One optimiser step on this worker's share of a global batch.

        Returns
        -------
        sums : tensor (3,)
            Reduced over the replicas: the summed per-streamline errors,
            the logged loss's weighted sum and the global batch size.
        """
        return self._train(self._per_replica(batch))

    def test_step(self, batch):
        """The losses of a validation batch (as :meth:`train_step`, no update)."""
        return self._test(self._per_replica(batch))

    def evaluate(self, sequence):
        """``val_streamline_loss`` and ``val_loss`` of a sequence."""
        total = np.zeros(3)
        for i in range(len(sequence)):
            total += np.asarray(self.test_step(sequence.local_batch(i)))
        return _logs(total, prefix="val_")

    def fit(
        self,
        train_seq,
        *,
        epochs,
        initial_epoch=0,
        callbacks=(),
        valid_seq=None,
        verbose=1,
        stop_models=(),
    ):
        """Train from ``initial_epoch`` to ``epochs`` (or until a callback stops).

        Each epoch sets the training sequence's epoch, runs every batch's
        step, evaluates the validation sequence and calls the callbacks;
        in a multi-worker run the chief's decision to stop is then
        broadcast. ``stop_models`` are other models whose ``stop_training``
        a callback may set (inference copies).
        """
        import keras

        model = self.model
        steps = len(train_seq)
        cbs = keras.callbacks.CallbackList(
            list(callbacks),
            add_history=False,
            add_progbar=verbose != 0,
            verbose=verbose,
            epochs=epochs,
            steps=steps,
            model=model,
        )
        model.stop_training = False
        logs = {}
        cbs.on_train_begin()
        for epoch in range(int(initial_epoch), int(epochs)):
            train_seq.set_epoch(epoch)
            cbs.on_epoch_begin(epoch)
            total = None
            for i in range(steps):
                cbs.on_train_batch_begin(i)
                out = self.train_step(train_seq.local_batch(i))
                total = out if total is None else total + out
                cbs.on_train_batch_end(i, {})
            logs = _logs(np.asarray(total))
            if valid_seq is not None:
                logs.update(self.evaluate(valid_seq))
            cbs.on_epoch_end(epoch, logs)
            stop = model.stop_training or any(m.stop_training for m in stop_models)
            if self.dist.multi_worker:
                stop = bool(self.dist.broadcast([np.float64(stop)])[0])
            if stop:
                break
        cbs.on_train_end(logs)
        return logs


def _to_tensor(tf, item):
    if isinstance(item, (tuple, list)):
        return tuple(_to_tensor(tf, v) for v in item)
    return tf.constant(np.asarray(item))


def _logs(total, prefix=""):
    per, logged, n = (float(v) for v in total)
    n = max(n, 1.0)
    return {f"{prefix}loss": logged / n, f"{prefix}streamline_loss": per / n}
