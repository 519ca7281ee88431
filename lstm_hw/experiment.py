"""Ideal, offline and in-situ training compared on one task, split and seed.

:func:`run_experiment` is what ``lstm-hw run`` does. Every mode starts from
the same initial weights (drawn from the run's seed) and sees the same data;
each mode has its own random stream derived from the seed, so a mode gives
the same numbers whether it runs alone, after others, or after a resume.

Modes
-----
``ideal``
    Floating-point training and evaluation.
``offline``
    The ideal training (reused when ``ideal`` ran), then one programming of
    the crossbar (one write per device) and evaluation on it.
``offline_aware``
    Hardware-aware software training: every forward pass reads a freshly
    programmed scratch chip (programming noise, levels, read noise, DAC, ADC
    and IR drop as configured), and the gradients computed at those weights
    update the clean software weights (straight-through). Then as ``offline``.
``insitu``
    The scheme of Li et al., Nature Machine Intelligence 1, 49-57 (2019): the
    forward pass runs on the crossbar, the backward pass in software on the
    conductances read back from it, and each weight update is written with
    the device's own programming rule (the 1T1R gate-voltage scheme or
    incremental pulses), so the network gets the update the hardware makes.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from crossbar.device import DeviceParams
from crossbar.differential import WeightClippingWarning
from crossbar.programming import GateVoltageScheme, IncrementalPulses, WriteToTarget
from crossbar.tiling import Chip
from lstm_hw import data as data_mod
from lstm_hw.dense import Dense
from lstm_hw.gru import GRU
from lstm_hw.hardware import HardwareNetwork
from lstm_hw.losses import CrossEntropyLoss, MSELoss
from lstm_hw.lstm import LSTM
from lstm_hw.network import Network
from lstm_hw.optimizers import SGD, Adam, RMSprop
from lstm_hw.progress import Progress
from lstm_hw.training import History, evaluate, train

logger = logging.getLogger(__name__)

MODES = ("ideal", "offline", "offline_aware", "insitu")
# Stream ids of the run's random generators: one per purpose, so that adding
# or removing a mode never changes the numbers of another.
_STREAM = {
    "init": 0,
    "data": 1,
    "ideal": 2,
    "offline": 3,
    "offline_aware": 4,
    "insitu": 5,
}


def _rng(cfg, stream: str) -> np.random.Generator:
    return np.random.default_rng([int(cfg.seed), _STREAM[stream]])


# -- builders ------------------------------------------------------------------


def build_dataset(cfg) -> data_mod.Dataset:
    """The task's data set (generated ones from the run's seed)."""
    t = cfg.task
    if t.name == "airline":
        return data_mod.load_airline()
    if t.name == "japanese_vowels":
        return data_mod.load_japanese_vowels()
    if t.name == "adding":
        return data_mod.make_adding_problem(
            t.n_train, t.length, _rng(cfg, "data"), n_test=t.n_test
        )
    if t.name == "csv":
        kwargs = {"train_fraction": t.train_fraction}
        if t.column:
            kwargs["column"] = t.column
        return data_mod.load_csv_series(t.path, **kwargs)
    return data_mod.load_npz_sequences(t.path)


def build_network(cfg, dataset) -> Network:
    """The network of the config with its initial weights from the seed."""
    rng = _rng(cfg, "init")
    n = cfg.network
    if n.cell == "lstm":
        rnn = LSTM(dataset.n_features, n.hidden_size, variant=n.variant, rng=rng)
    else:
        rnn = GRU(dataset.n_features, n.hidden_size, rng=rng)
    head = Dense(
        n.hidden_size, dataset.n_outputs, activation=n.output_activation, rng=rng
    )
    return Network(rnn, head, output=n.output)


def build_loss(cfg):
    if cfg.training.loss == "mse":
        return MSELoss(reduction=cfg.training.loss_reduction)
    return CrossEntropyLoss(reduction=cfg.training.loss_reduction)


def build_optimizer(cfg):
    o = cfg.optimizer
    if o.name == "sgd":
        return SGD(o.lr, momentum=o.momentum)
    if o.name == "rmsprop":
        return RMSprop(o.lr, alpha=o.alpha, eps=o.eps)
    return Adam(o.lr, betas=(o.beta1, o.beta2), eps=o.eps)


def device_params(cfg, noise_scale: float = 1.0, levels: bool = True) -> DeviceParams:
    """The device of the config (``noise_scale`` scales programming noise and
    ``levels`` False makes it continuous, for hardware-aware training)."""
    params = cfg.device.to_params()
    return replace(
        params,
        prog_noise=params.prog_noise * noise_scale,
        n_levels=params.n_levels if levels else None,
    )


def _x_scale(dataset) -> float:
    x, _, _ = dataset.split("train")
    return max(1.0, float(np.max(np.abs(x))))


def build_hardware(cfg, net, dataset, rng, device=None) -> HardwareNetwork:
    """A fresh chip (fabricated from ``rng``) holding ``net``'s matrices."""
    m = cfg.mapping
    chip = Chip(cfg.array.to_params(), device or device_params(cfg), rng)
    mapping = m.to_mapping()
    return HardwareNetwork(
        net,
        chip,
        mapping,
        placement=m.placement,
        v_read=m.v_read,
        bias_voltage=m.bias_voltage,
        bias_rows=m.bias_rows,
        x_scale=_x_scale(dataset),
    )


class SymmetricStartWarning(UserWarning):
    """In-situ training starts from weights that no hidden unit can leave."""


def _hidden_units_identical(net) -> bool:
    """Whether all hidden units have the same weights in and out, so that
    gradient descent keeps them identical."""
    hidden = net.rnn.hidden_size
    w = net.rnn.combined_matrix()
    rows = w.reshape(-1, hidden, w.shape[1])
    head = net.head.combined_matrix()[:, :hidden]
    per_unit = [v for v in net.rnn.params.values() if v.shape == (hidden,)]
    return bool(
        np.all(rows == rows[:, :1])
        and np.all(head == head[:, :1])
        and all(np.all(v == v[0]) for v in per_unit)
    )


def insitu_scheme(cfg):
    """The device's own programming rule used for in-situ updates."""
    s = cfg.insitu
    if s.scheme == "gate":
        return GateVoltageScheme(unswitched_noise=s.unswitched_noise)
    return IncrementalPulses(
        dg_up=s.dg_up,
        dg_down=s.dg_down,
        soft_bounds=s.soft_bounds,
        c2c_noise=s.c2c_noise,
    )


# -- results of one mode -------------------------------------------------------


@dataclass
class ModeResult:
    """What one training mode produced."""

    metrics: dict
    history: History
    predictions: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    snapshots: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, folder: Path) -> None:
        from lstm_hw.results import write_json, write_npz

        folder.mkdir(parents=True, exist_ok=True)
        write_npz(folder / "params.npz", **self.params)
        write_npz(folder / "predictions.npz", **self.predictions)
        if self.snapshots:
            write_npz(folder / "conductances.npz", **self.snapshots)
        write_json(folder / "history.json", self.history.as_dict())
        # Written last: its presence marks the mode as complete for --resume.
        write_json(folder / "metrics.json", self.metrics)

    @classmethod
    def load(cls, folder: Path) -> ModeResult | None:
        if not (folder / "metrics.json").exists():
            return None

        def npz(name):
            path = folder / name
            if not path.exists():
                return {}
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}

        return cls(
            metrics=json.loads((folder / "metrics.json").read_text()),
            history=History.from_dict(
                json.loads((folder / "history.json").read_text())
            ),
            predictions=npz("predictions.npz"),
            params=npz("params.npz"),
            snapshots=npz("conductances.npz"),
        )


def _metrics(dataset, ev: dict, seconds: float, pulses: int | None) -> dict:
    key = "test_rmse" if dataset.task == "regression" else "test_accuracy"
    out = {key: float(ev[key]), "train_seconds": float(seconds)}
    if pulses is not None:
        out["programming_pulses"] = int(pulses)
    return out


def _predictions(ev: dict) -> dict[str, np.ndarray]:
    out = {
        "predictions": np.asarray(ev["predictions"]),
        "targets": np.asarray(ev["targets"]),
    }
    if ev.get("mask") is not None:
        out["mask"] = np.asarray(ev["mask"])
    return out


def _snapshot_key(epoch: int) -> str:
    return f"epoch_{epoch:05d}"


# -- the modes -----------------------------------------------------------------


class Experiment:
    """Runs the configured modes of one config and keeps their results.

    With ``run_dir`` set, training saves a checkpoint of the mode it runs
    (network, optimizer, random stream, history and, for hardware modes, the
    chip) at most every ``checkpoint_seconds``; with ``resume`` a mode starts
    from its checkpoint and ends with the numbers of an uninterrupted run.

    ``hardware`` keeps the chip of every hardware mode run in this process
    (a :class:`~lstm_hw.hardware.HardwareNetwork`), to inspect its devices
    after training.
    """

    checkpoint_seconds = 30.0

    def __init__(self, cfg, progress: bool = False, run_dir=None, resume=False):
        self.cfg = cfg
        self.progress = progress
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.resume = resume
        self.dataset = build_dataset(cfg)
        self.loss = build_loss(cfg)
        self.results: dict[str, ModeResult] = {}
        self.hardware: dict[str, HardwareNetwork] = {}

    def _checkpoint(self, mode: str):
        if self.run_dir is None:
            return None
        from lstm_hw.results import Checkpoint

        return Checkpoint(self.run_dir / "modes" / mode)

    def _train(
        self, mode, net, rng, optimizer, *, snapshot=None, extra=None, **hooks
    ) -> tuple[History, float]:
        """Train one mode with progress, snapshots and checkpoints.

        ``extra`` is ``(get, set)`` for the mode's own state beyond the
        network, the optimizer and ``rng`` (a chip, the snapshots so far).
        """
        t = self.cfg.training
        ckpt = self._checkpoint(mode)
        start_epoch, history, spent = 0, None, 0.0
        if self.resume and ckpt is not None and ckpt.exists():
            arrays, state = ckpt.load()
            for k, v in net.params().items():
                v[...] = arrays[f"param/{k}"]
            if optimizer is not None:
                optimizer.load_state_dict(
                    {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
                )
            if extra is not None:
                extra[1](
                    {k[6:]: v for k, v in arrays.items() if k.startswith("extra/")}
                )
            rng.bit_generator.state = state["rng"]
            start_epoch = int(state["epoch"])
            history = History.from_dict(state["history"])
            spent = float(state["seconds"])
            logger.info("mode %s: resumed at epoch %d", mode, start_epoch)

        bar = Progress(t.epochs, mode, "epoch", enabled=self.progress)
        if start_epoch:
            bar.update(start_epoch)
        clock = {"start": time.perf_counter(), "saved": time.perf_counter()}

        def save(epoch, history):
            arrays = {f"param/{k}": v for k, v in net.params().items()}
            if optimizer is not None:
                arrays.update(
                    {f"opt/{k}": v for k, v in optimizer.state_dict().items()}
                )
            if extra is not None:
                arrays.update({f"extra/{k}": v for k, v in extra[0]().items()})
            seconds = spent + time.perf_counter() - clock["start"]
            state = {
                "epoch": epoch + 1,
                "rng": rng.bit_generator.state,
                "history": history.as_dict(),
                "seconds": seconds,
            }
            ckpt.save(arrays, state)
            clock["saved"] = time.perf_counter()

        def callback(epoch, history):
            value = history.test_metric[-1]
            bar.update(1, **({} if math.isnan(value) else {history.metric: value}))
            if snapshot is not None and (epoch + 1) % t.snapshot_every == 0:
                snapshot(epoch + 1)
            due = time.perf_counter() - clock["saved"] >= self.checkpoint_seconds
            if ckpt is not None and due and epoch + 1 < t.epochs:
                save(epoch, history)

        try:
            history = train(
                net,
                self.dataset,
                self.loss,
                optimizer if "update_fn" not in hooks else None,
                t.epochs,
                t.batch_size,
                rng,
                clip=t.clip_norm or None,
                truncate=t.truncate or None,
                callback=callback,
                start_epoch=start_epoch,
                eval_every=t.eval_every,
                history=history,
                **hooks,
            )
        finally:
            bar.close()
        return history, spent + time.perf_counter() - clock["start"]

    def _evaluate(self, net, plans=None, rng=None) -> dict:
        seed = 0 if rng is None else int(rng.integers(2**32))
        return evaluate(net, self.dataset, "test", plans=plans, seed=seed)

    def run_ideal(self) -> ModeResult:
        net = build_network(self.cfg, self.dataset)
        rng = _rng(self.cfg, "ideal")
        history, seconds = self._train("ideal", net, rng, build_optimizer(self.cfg))
        ev = self._evaluate(net)
        return ModeResult(
            _metrics(self.dataset, ev, seconds, None),
            history,
            _predictions(ev),
            {k: v.copy() for k, v in net.params().items()},
        )

    def _software_trained(self) -> tuple[Network, ModeResult]:
        ideal = self.results.get("ideal")
        if ideal is None:
            ideal = self.run_ideal()
        net = build_network(self.cfg, self.dataset)
        for k, v in net.params().items():
            v[...] = ideal.params[k]
        return net, ideal

    def _program_and_evaluate(self, mode, net, rng, history, seconds) -> ModeResult:
        hw = build_hardware(self.cfg, net, self.dataset, rng)
        self.hardware[mode] = hw
        pulses = hw.program(WriteToTarget())
        self._age(hw)
        ev = self._evaluate(net, hw.plans(), rng)
        return ModeResult(
            _metrics(self.dataset, ev, seconds, pulses),
            history,
            _predictions(ev),
            {k: v.copy() for k, v in net.params().items()},
            {"programmed": hw.conductances(), **self._ir_map(hw)},
        )

    def _age(self, hw) -> None:
        if self.cfg.device.drift_time > 0:
            for arr in hw.chip.arrays:
                arr.advance_time(self.cfg.device.drift_time)

    def _ir_map(self, hw) -> dict:
        if not hw.chip.array_params.has_wires:
            return {}
        return {"ir_drop_error": np.stack([a.ir_drop_error() for a in hw.chip.arrays])}

    def run_offline(self) -> ModeResult:
        net, ideal = self._software_trained()
        seconds = ideal.metrics["train_seconds"]
        return self._program_and_evaluate(
            "offline", net, _rng(self.cfg, "offline"), ideal.history, seconds
        )

    def run_offline_aware(self) -> ModeResult:
        cfg = self.cfg
        rng = _rng(cfg, "offline_aware")
        net = build_network(cfg, self.dataset)
        optimizer = build_optimizer(cfg)
        scratch_dev = device_params(
            cfg, noise_scale=cfg.aware.noise_scale, levels=cfg.aware.levels
        )
        scratch = build_hardware(cfg, net, self.dataset, rng, device=scratch_dev)
        state: dict = {"clean": None}

        def restore_clean():
            if state["clean"] is not None:
                for k, v in net.params().items():
                    v[...] = state["clean"][k]
                state["clean"] = None

        def plans_fn():
            # Program the clean weights afresh, then compute at what the chip holds.
            restore_clean()
            state["clean"] = {k: v.copy() for k, v in net.params().items()}
            with warnings.catch_warnings():
                # Clipping during training is expected and is what the
                # straight-through gradient learns around.
                warnings.simplefilter("ignore", WeightClippingWarning)
                scratch.program(WriteToTarget())
            plans = scratch.plans()
            scratch.load_into_network(noisy=False)
            return plans

        def update_fn(net_, grads):
            restore_clean()
            optimizer.step(net_.params(), grads)

        def get_extra():
            # Checkpoints hold the clean weights, which the next forward
            # pass would restore anyway.
            restore_clean()
            return scratch.get_state()

        history, seconds = self._train(
            "offline_aware",
            net,
            rng,
            optimizer,
            extra=(get_extra, scratch.set_state),
            update_fn=update_fn,
            forward_plans_fn=plans_fn,
        )
        restore_clean()
        return self._program_and_evaluate("offline_aware", net, rng, history, seconds)

    def run_insitu(self) -> ModeResult:
        cfg = self.cfg
        rng = _rng(cfg, "insitu")
        net = build_network(cfg, self.dataset)
        optimizer = build_optimizer(cfg)
        hw = build_hardware(cfg, net, self.dataset, rng)
        self.hardware["insitu"] = hw
        scheme = insitu_scheme(cfg)
        noisy_back = cfg.insitu.read_noise_in_backward
        snapshots = {}

        # The devices start at zero weight, or hold the network's initial
        # weights, written with the scheme itself (the gate scheme) or with
        # one-shot writes (incremental pulses).
        if cfg.insitu.init == "reset":
            hw.initialize(scheme)
        elif isinstance(scheme, GateVoltageScheme):
            hw.program(scheme)
        else:
            hw.program(WriteToTarget())
        snapshots["before"] = hw.conductances()
        snapshots[_snapshot_key(0)] = snapshots["before"]
        hw.load_into_network(noisy=noisy_back)
        if _hidden_units_identical(net):
            message = (
                "in-situ training starts with every hidden unit holding the same "
                "weights (insitu.init = 'reset' without programming noise or "
                "device variation), so training cannot tell them apart; set "
                "insitu.init = 'network' or a nonzero device.prog_noise"
            )
            logger.warning(message)
            warnings.warn(message, SymmetricStartWarning, stacklevel=2)

        def plans_fn():
            return hw.plans()

        def update_fn(net_, grads):
            before = net_.combined_matrices()
            optimizer.step(net_.params(), grads)
            after = net_.combined_matrices()
            hw.apply_update({k: after[k] - before[k] for k in after}, scheme)
            hw.load_into_network(noisy=noisy_back)

        def snapshot(epoch):
            snapshots[_snapshot_key(epoch)] = hw.conductances()

        def get_extra():
            out = hw.get_state()
            out.update({f"snap/{k}": v for k, v in snapshots.items()})
            return out

        def set_extra(arrays):
            hw.set_state(arrays, scheme)
            snapshots.clear()
            snapshots.update({k[5:]: v for k, v in arrays.items() if k[:5] == "snap/"})

        history, seconds = self._train(
            "insitu",
            net,
            rng,
            optimizer,
            snapshot=snapshot,
            extra=(get_extra, set_extra),
            update_fn=update_fn,
            forward_plans_fn=plans_fn,
        )
        self._age(hw)
        ev = self._evaluate(net, hw.plans(), rng)
        snapshots["after"] = hw.conductances()
        snapshots.update(self._ir_map(hw))
        return ModeResult(
            _metrics(self.dataset, ev, seconds, hw.pulses),
            history,
            _predictions(ev),
            {k: v.copy() for k, v in net.params().items()},
            snapshots,
        )

    def metrics(self) -> dict:
        """The content of ``metrics.json`` for the modes run so far."""
        out = {
            "task": self.cfg.task.name,
            "seed": int(self.cfg.seed),
            "modes": {m: self.results[m].metrics for m in self.results},
        }
        if self.dataset.task == "regression" and self.dataset.per_step:
            out["persistence_rmse"] = float(data_mod.persistence_rmse(self.dataset))
        return out

    def run_mode(self, mode: str) -> ModeResult:
        runner = {
            "ideal": self.run_ideal,
            "offline": self.run_offline,
            "offline_aware": self.run_offline_aware,
            "insitu": self.run_insitu,
        }[mode]
        logger.info("mode %s: training", mode)
        # One BLAS thread: OpenBLAS's sums depend on its thread count, so this
        # keeps a seed's numbers the same whatever the process ran before.
        # The products are small too, so threads would cost more than they
        # bring; parallel work goes to independent runs (sweeps).
        with threadpool_limits(limits=1):
            result = runner()
        self.results[mode] = result
        logger.info("mode %s: %s", mode, result.metrics)
        return result


def run_modes(cfg, run_dir=None, resume: bool = False, progress: bool = False):
    """Run (or, with ``resume``, load) every mode; return the :class:`Experiment`.

    Each finished mode is saved under ``run_dir/modes/<mode>`` unless
    ``run_dir`` is None.
    """
    exp = Experiment(cfg, progress=progress, run_dir=run_dir, resume=resume)
    for mode in cfg.modes:
        folder = None if run_dir is None else Path(run_dir) / "modes" / mode
        if resume and folder is not None:
            done = ModeResult.load(folder)
            if done is not None:
                logger.info("mode %s: loaded from %s", mode, folder)
                exp.results[mode] = done
                continue
        result = exp.run_mode(mode)
        if folder is not None:
            result.save(folder)
            exp._checkpoint(mode).clear()
    return exp


def run_experiment(cfg, run_dir, resume: bool = False, progress: bool = False) -> dict:
    """Run every mode of ``cfg``, writing results into ``run_dir``.

    With ``run_dir`` None nothing is written (for notebooks and quick
    studies); :func:`run_modes` also returns the full results. With
    ``resume``, modes whose results are already in ``run_dir`` are loaded
    instead of run again; since every mode draws from its own stream
    of the seed, the final numbers equal those of an uninterrupted run.

    Returns the content of ``metrics.json``.
    """
    from lstm_hw.plots import save_plots
    from lstm_hw.results import write_csv, write_json

    exp = run_modes(cfg, run_dir, resume=resume, progress=progress)
    metrics = exp.metrics()
    if run_dir is None:
        return metrics
    run_dir = Path(run_dir)

    rows = []
    for m in cfg.modes:
        h = exp.results[m].history
        for e, loss, metric, sec in zip(
            h.epoch, h.train_loss, h.test_metric, h.seconds, strict=True
        ):
            rows.append(
                {
                    "mode": m,
                    "epoch": e,
                    "train_loss": loss,
                    h.metric: metric,
                    "seconds": sec,
                }
            )
    write_csv(run_dir / "history.csv", rows)
    save_plots(exp, run_dir)
    write_json(run_dir / "metrics.json", metrics)
    return metrics
