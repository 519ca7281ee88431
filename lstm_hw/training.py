"""Mini-batch training and evaluation of a sequence network on a Dataset.

:func:`train` runs epochs of shuffled mini-batches: forward pass, loss,
backpropagation through time, optional clipping, and an update. Two hooks
let hardware modes reuse the loop unchanged:

- ``forward_plans_fn()`` returns the read plans for the next forward pass
  (None: exact weights), e.g. plans of crossbars holding the weights;
- ``update_fn(net, grads)`` replaces the software update, e.g. to program
  the weight changes into a crossbar (in-situ training).

Every random choice (shuffling, the seed of each forward pass) comes from the
``rng`` passed in, so a run is reproducible bit for bit, and a run resumed
from a checkpoint (network parameters, optimizer ``state_dict()``, the
generator's ``bit_generator.state`` and ``start_epoch``) continues exactly as
the uninterrupted run would have.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from crossbar.validation import check_choice, check_number, fail
from lstm_hw.data import Dataset
from lstm_hw.losses import sequence_mask
from lstm_hw.optimizers import clip_grad_norm

logger = logging.getLogger(__name__)

__all__ = ["History", "evaluate", "train"]

# Forward-pass seeds are drawn below 2**32, the range every layer accepts
# (lstm_hw.lstm.SEED_MAX).
_SEED_BOUND = 2**32


@dataclass
class History:
    """Per-epoch record of a training run.

    Attributes
    ----------
    metric : str
        Name of the test metric: ``"test_rmse"`` (the data's own units) or
        ``"test_accuracy"`` (fraction in [0, 1]).
    epoch : list of int
        Epoch numbers (0-based, counting from ``start_epoch`` of a resume).
    train_loss : list of float
        Mean over the epoch's mini-batches of the loss value.
    test_metric : list of float
        Test metric after the epoch; NaN for epochs that were not evaluated.
    seconds : list of float
        Wall time of the epoch including its evaluation, in seconds.
    """

    metric: str
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_metric: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epoch)

    def append(self, epoch: int, train_loss: float, test_metric: float, seconds):
        """Add the record of one epoch."""
        self.epoch.append(int(epoch))
        self.train_loss.append(float(train_loss))
        self.test_metric.append(float(test_metric))
        self.seconds.append(float(seconds))

    def as_dict(self) -> dict:
        """Plain lists, ready for ``json.dump`` (NaN written as None)."""

        def clean(values):
            return [None if math.isnan(v) else v for v in values]

        return {
            "metric": self.metric,
            "epoch": list(self.epoch),
            "train_loss": clean(self.train_loss),
            "test_metric": clean(self.test_metric),
            "seconds": list(self.seconds),
        }

    @classmethod
    def from_dict(cls, data: dict) -> History:
        """Inverse of :meth:`as_dict`."""

        def restore(values):
            return [math.nan if v is None else float(v) for v in values]

        return cls(
            metric=data["metric"],
            epoch=[int(e) for e in data["epoch"]],
            train_loss=restore(data["train_loss"]),
            test_metric=restore(data["test_metric"]),
            seconds=[float(s) for s in data["seconds"]],
        )


def _metric_name(dataset: Dataset, split: str = "test") -> str:
    suffix = "rmse" if dataset.task == "regression" else "accuracy"
    return f"{split}_{suffix}"


def _check_net(net) -> None:
    for attr in ("forward", "backward", "params", "grads"):
        if not callable(getattr(net, attr, None)):
            fail(
                "net",
                "a network with forward, backward, params and grads methods",
                type(net).__name__,
                f"it has no method '{attr}'",
            )


def _forward(net, x, lengths, plans, seed: int) -> np.ndarray:
    """One forward pass; lengths are dropped when every sequence is full.

    The dataset's arrays are read-only; writable copies are passed so that
    jitted kernels see one array type (no second compilation)."""
    full = bool(np.all(lengths == x.shape[1]))
    y = net.forward(
        np.array(x, dtype=np.float64, order="C"),
        lengths=None if full else np.array(lengths, dtype=np.int64),
        plans=plans,
        seed=seed,
    )
    return np.asarray(y)


def evaluate(
    net,
    dataset: Dataset,
    split: str = "test",
    *,
    plans=None,
    seed: int = 0,
    batch_size: int | None = None,
) -> dict:
    """Metric of ``net`` on one split of ``dataset``.

    Regression: the RMSE in the data's own units (targets and predictions
    passed through ``dataset.inverse_transform``), over the steps of
    ``dataset.metric_mask(split)`` for per-step targets (for the airline
    test split: the last 48 months, after running the whole sequence).
    Classification: the fraction of sequences (or counted steps) whose
    most probable class is the target.

    Parameters
    ----------
    net : Network
        Anything with ``forward(x, lengths=None, plans=None, seed=0)``.
    dataset : Dataset
    split : {"test", "train"}
    plans : optional
        Read plans handed to ``net.forward`` (None: exact weights).
    seed : int
        Seed of the forward passes (read noise of hardware plans); batch k
        uses ``seed + k``.
    batch_size : int, optional
        Sequences per forward pass; default all at once.

    Returns
    -------
    dict
        ``"<split>_rmse"`` or ``"<split>_accuracy"`` (float);
        ``"predictions"``: outputs in the data's units (regression) or
        predicted class indices (classification), shaped like the targets
        (the network's full output for per-step regression);
        ``"targets"``: the targets in the same units; ``"mask"``: the
        ``(N, T)`` boolean mask of counted steps, or None.
    """
    check_choice("split", split, ["test", "train"])
    check_number("seed", seed, low=0, integer=True)
    x, y, lengths = dataset.split(split)
    n = x.shape[0]
    if batch_size is None:
        batch_size = n
    check_number("batch_size", batch_size, low=1, integer=True)
    outputs = []
    for k, start in enumerate(range(0, n, batch_size)):
        sl = slice(start, start + batch_size)
        outputs.append(
            _forward(net, x[sl], lengths[sl], plans, (int(seed) + k) % _SEED_BOUND)
        )
    out = np.concatenate(outputs, axis=0)
    mask = dataset.metric_mask(split)
    name = _metric_name(dataset, split)
    if dataset.task == "regression":
        if out.shape != y.shape:
            fail("net", f"a network whose output has shape {y.shape}", out)
        pred = dataset.inverse_transform(out)
        true = dataset.inverse_transform(y)
        err = (pred - true) if mask is None else (pred - true)[mask]
        value = float(np.sqrt(np.mean(err**2)))
    else:
        if out.shape != (*y.shape, dataset.n_classes):
            fail(
                "net",
                f"a network whose output has shape {(*y.shape, dataset.n_classes)}",
                out,
            )
        pred = np.argmax(out, axis=-1)
        true = np.array(y)
        hits = pred == true
        value = float(np.mean(hits if mask is None else hits[mask]))
    return {name: value, "predictions": pred, "targets": true, "mask": mask}


def train(
    net,
    dataset: Dataset,
    loss,
    optimizer,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    clip: float | None = None,
    truncate: int | None = None,
    callback: Callable | None = None,
    start_epoch: int = 0,
    *,
    update_fn: Callable | None = None,
    forward_plans_fn: Callable | None = None,
    eval_every: int = 1,
    history: History | None = None,
) -> History:
    """Train ``net`` on ``dataset.x_train`` by mini-batch BPTT.

    Each epoch visits the training sequences in an order drawn with
    ``rng.permutation`` (kept in file order when ``batch_size >= N``). For
    every mini-batch: ``plans = forward_plans_fn()``, ``y = net.forward(x,
    lengths, plans, seed)`` with a seed drawn from ``rng``, ``(value, dy) =
    loss(y, target, mask)`` (the mask marks valid steps of per-step
    targets), ``net.backward(dy, truncate=truncate)``, clipping of the joint
    gradient norm to ``clip``, then ``update_fn(net, net.grads())``.
    After an evaluated epoch the test metric is computed with
    :func:`evaluate` (with plans from ``forward_plans_fn`` too).

    Parameters
    ----------
    net : Network
        ``forward(x, lengths=None, plans=None, seed=0)``, ``backward(dy,
        truncate=None)``, ``params()`` and ``grads()`` (flat dicts of the
        layers' arrays).
    dataset : Dataset
    loss : callable
        ``loss(y, target, mask=None) -> (value, dL/dy)``, e.g. ``MSELoss``.
    optimizer : Optimizer or None
        Applies ``optimizer.step(net.params(), grads)``; may be None when
        ``update_fn`` is given.
    epochs : int
        Last epoch (exclusive): epochs ``start_epoch .. epochs - 1`` run.
    batch_size : int
        Sequences per mini-batch (the last one may be smaller).
    rng : numpy.random.Generator
        Source of the shuffling and of the forward seeds.
    clip : float, optional
        Largest joint L2 norm of the gradients (see ``clip_grad_norm``).
    truncate : int, optional
        Truncated BPTT over this many steps (None: full BPTT).
    callback : callable, optional
        ``callback(epoch, history)`` after every epoch; a truthy return
        value stops the training.
    start_epoch : int
        First epoch, to resume a run (restore the network, the optimizer and
        ``rng`` to their state at the end of epoch ``start_epoch - 1``).
    update_fn : callable, optional
        ``update_fn(net, grads)`` instead of the optimizer step; it receives
        the clipped gradients.
    forward_plans_fn : callable, optional
        ``forward_plans_fn()`` returns the plans for the next forward pass.
    eval_every : int
        Evaluate the test metric every this many epochs and after the last.
    history : History, optional
        A history to continue (e.g. restored with ``History.from_dict``).

    Returns
    -------
    History
    """
    _check_net(net)
    if not isinstance(dataset, Dataset):
        fail("dataset", "a lstm_hw.data.Dataset", type(dataset).__name__)
    if not callable(loss):
        fail("loss", "a callable loss(y, target, mask)", loss)
    if update_fn is None and not callable(getattr(optimizer, "step", None)):
        fail("optimizer", "an optimizer with a step method", optimizer)
    if update_fn is not None and not callable(update_fn):
        fail("update_fn", "None or a callable update_fn(net, grads)", update_fn)
    if forward_plans_fn is not None and not callable(forward_plans_fn):
        fail("forward_plans_fn", "None or a callable", forward_plans_fn)
    if callback is not None and not callable(callback):
        fail("callback", "None or a callable callback(epoch, history)", callback)
    check_number("epochs", epochs, low=0, integer=True)
    check_number("batch_size", batch_size, low=1, integer=True)
    check_number("start_epoch", start_epoch, low=0, integer=True)
    check_number("eval_every", eval_every, low=1, integer=True)
    if not isinstance(rng, np.random.Generator):
        fail("rng", "a numpy.random.Generator", rng)
    if clip is not None:
        check_number("clip", clip, low=0.0, low_open=True)
    if truncate is not None:
        check_number("truncate", truncate, low=1, integer=True)
    metric = _metric_name(dataset)
    if history is None:
        history = History(metric=metric)
    elif not isinstance(history, History) or history.metric != metric:
        fail("history", f"None or a History of '{metric}'", history)

    def software_update(net_, grads):
        optimizer.step(net_.params(), grads)

    apply_update = software_update if update_fn is None else update_fn
    x_all, y_all, len_all = dataset.split("train")
    n = x_all.shape[0]
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        order = np.arange(n) if batch_size >= n else rng.permutation(n)
        losses = []
        for b, start in enumerate(range(0, n, batch_size)):
            idx = order[start : start + batch_size]
            xb, yb, lb = x_all[idx], y_all[idx], len_all[idx]
            plans = None if forward_plans_fn is None else forward_plans_fn()
            seed = int(rng.integers(_SEED_BOUND))
            out = _forward(net, xb, lb, plans, seed)
            if not np.all(np.isfinite(out)):
                raise FloatingPointError(
                    f"network output is not finite in epoch {epoch}, batch {b}; "
                    "lower the learning rate or set clip"
                )
            mask = sequence_mask(lb, xb.shape[1]) if dataset.per_step else None
            value, dy = loss(out, yb, mask)
            net.backward(dy, truncate=truncate)
            grads = net.grads()
            if clip is not None:
                clip_grad_norm(grads, clip)
            apply_update(net, grads)
            losses.append(value)
        train_loss = float(np.mean(losses))
        test_value = math.nan
        if (epoch + 1) % eval_every == 0 or epoch == epochs - 1:
            plans = None if forward_plans_fn is None else forward_plans_fn()
            seed = int(rng.integers(_SEED_BOUND))
            test_value = evaluate(net, dataset, "test", plans=plans, seed=seed)[metric]
        history.append(epoch, train_loss, test_value, time.perf_counter() - t0)
        logger.debug(
            "epoch %d: train loss %.6g, %s %.6g", epoch, train_loss, metric, test_value
        )
        if callback is not None and callback(epoch, history):
            logger.info("training stopped by the callback after epoch %d", epoch)
            break
    if len(history):
        logger.info(
            "trained %s to epoch %d: train loss %.6g, %s %.6g",
            dataset.name,
            history.epoch[-1],
            history.train_loss[-1],
            metric,
            history.test_metric[-1],
        )
    return history
