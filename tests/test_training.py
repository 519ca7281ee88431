"""Training loop: determinism, shuffling, hooks, resume, metrics."""

import json

import numpy as np
import pytest

from crossbar.validation import ParameterError
from lstm_hw import LSTM, Dense, Network
from lstm_hw.data import (
    Dataset,
    MinMaxScaler,
    load_airline,
    load_japanese_vowels,
    make_adding_problem,
    persistence_rmse,
)
from lstm_hw.losses import CrossEntropyLoss, MSELoss
from lstm_hw.optimizers import SGD, Adam, RMSprop
from lstm_hw.training import History, evaluate, train


class LinearNet:
    """Per-step affine map with an optional softmax, following the Network
    API; it records every call so that tests can check what the loop did."""

    def __init__(self, n_in, n_out, output="all", softmax=False, rng=None):
        rng = np.random.default_rng(0) if rng is None else rng
        self.w = rng.normal(scale=0.5, size=(n_out, n_in))
        self.b = np.zeros(n_out)
        self.gw = np.zeros_like(self.w)
        self.gb = np.zeros_like(self.b)
        self.output = output
        self.softmax = softmax
        self.calls = []

    def forward(self, x, lengths=None, plans=None, seed=0):
        self.calls.append(
            ("forward", x.copy(), None if lengths is None else lengths.copy(), plans,
             seed)
        )  # fmt: skip
        n, t, _ = x.shape
        lengths = np.full(n, t) if lengths is None else lengths
        xs = x if self.output == "all" else x[np.arange(n), lengths - 1]
        z = xs @ self.w.T + self.b
        if self.softmax:
            e = np.exp(z - z.max(axis=-1, keepdims=True))
            z = e / e.sum(axis=-1, keepdims=True)
        self._cache = (xs, z)
        return z

    def backward(self, dy, truncate=None):
        self.calls.append(("backward", truncate))
        xs, y = self._cache
        if self.softmax:
            dy = y * (dy - np.sum(dy * y, axis=-1, keepdims=True))
        flat_x = xs.reshape(-1, xs.shape[-1])
        flat_d = dy.reshape(-1, dy.shape[-1])
        self.gw[...] = flat_d.T @ flat_x
        self.gb[...] = flat_d.sum(axis=0)

    def params(self):
        return {"w": self.w, "b": self.b}

    def grads(self):
        return {"w": self.gw, "b": self.gb}


def linear_dataset(rng, n=12, t=5):
    """Per-step regression y = 2 x - 1 (scaled units), variable lengths."""
    x = rng.uniform(size=(n, t, 1))
    lengths = rng.integers(2, t + 1, size=n)
    x = np.where(np.arange(t)[None, :, None] < lengths[:, None, None], x, 0.0)
    y = 2 * x - 1
    return Dataset(
        name="linear",
        task="regression",
        x_train=x,
        y_train=y,
        lengths_train=lengths,
        x_test=x[:4],
        y_test=y[:4],
        lengths_test=lengths[:4],
        scaler=MinMaxScaler(10.0, 20.0),
    )


def forward_batches(net):
    return [c for c in net.calls if c[0] == "forward"]


# ---------------------------------------------------------------- the loop


def test_training_reduces_the_loss_and_is_reproducible():
    ds = linear_dataset(np.random.default_rng(0))
    runs = []
    for _ in range(2):
        net = LinearNet(1, 1)
        hist = train(net, ds, MSELoss(), SGD(0.3, momentum=0.5), 60, 4,
                     np.random.default_rng(7))  # fmt: skip
        runs.append((net, hist))
    (net, hist), (net2, hist2) = runs
    assert hist.train_loss[-1] < 1e-4 * hist.train_loss[0]
    np.testing.assert_allclose(net.w, [[2.0]], rtol=1e-3)
    assert hist.test_metric[-1] < 0.01  # in data units (span 10)
    assert hist.train_loss == hist2.train_loss
    np.testing.assert_array_equal(net.w, net2.w)
    assert len(hist) == 60 and hist.epoch == list(range(60))
    assert hist.metric == "test_rmse" and all(s >= 0 for s in hist.seconds)


def test_shuffle_and_seeds_come_from_the_generator():
    ds = linear_dataset(np.random.default_rng(1), n=10)
    net = LinearNet(1, 1)
    train(net, ds, MSELoss(), SGD(0.0), 2, 4, np.random.default_rng(3), eval_every=5)
    calls = forward_batches(net)
    # replay the draws: per epoch a permutation, then one seed per batch,
    # then one seed for the evaluation after the last epoch
    ref = np.random.default_rng(3)
    expected = []
    for epoch in range(2):
        order = ref.permutation(10)
        for start in range(0, 10, 4):
            expected.append((order[start : start + 4], int(ref.integers(2**32))))
        if epoch == 1:
            expected.append((np.arange(4), int(ref.integers(2**32))))
    assert len(calls) == len(expected)
    x_all = np.concatenate([ds.x_train, ds.x_test])
    lengths_all = np.concatenate([ds.lengths_train, ds.lengths_test])
    for k, (call, (idx, seed)) in enumerate(zip(calls, expected, strict=True)):
        src = 0 if k < len(calls) - 1 else 10
        np.testing.assert_array_equal(call[1], x_all[src + idx])
        np.testing.assert_array_equal(call[2], lengths_all[src + idx])
        assert call[4] == seed


def test_full_batch_keeps_the_order_and_drops_full_lengths():
    rng = np.random.default_rng(2)
    ds = make_adding_problem(6, 4, rng, n_test=2)
    net = LinearNet(2, 1, output="last")
    train(net, ds, MSELoss(), SGD(0.1), 3, 100, np.random.default_rng(0))
    for call in forward_batches(net)[:-1:2]:
        np.testing.assert_array_equal(call[1], ds.x_train)
        assert call[2] is None  # every sequence is full


def test_hooks_update_fn_plans_truncate_clip_and_callback():
    ds = linear_dataset(np.random.default_rng(4), n=8)
    net = LinearNet(1, 1)
    seen_norms, plan_calls, epochs_seen = [], [], []

    def plans_fn():
        plan_calls.append(len(plan_calls))
        return {"tag": len(plan_calls)}

    def update_fn(net_, grads):
        assert set(grads) == {"w", "b"}
        seen_norms.append(np.sqrt(sum(np.sum(g**2) for g in grads.values())))
        net_.w -= 0.1 * grads["w"]

    def callback(epoch, history):
        epochs_seen.append((epoch, len(history)))
        return epoch == 2  # stop after the third epoch

    hist = train(
        net, ds, MSELoss("sum"), None, 10, 3, np.random.default_rng(0),
        clip=1e-3, truncate=2, callback=callback, update_fn=update_fn,
        forward_plans_fn=plans_fn,
    )  # fmt: skip
    assert len(hist) == 3 and epochs_seen == [(0, 1), (1, 2), (2, 3)]
    # 3 batches per epoch and one evaluation per epoch, each with fresh plans
    assert len(plan_calls) == 3 * 4
    assert [c[3]["tag"] for c in forward_batches(net)] == list(range(1, 13))
    assert all(n <= 1e-3 * (1 + 1e-9) for n in seen_norms) and len(seen_norms) == 9
    assert {c[1] for c in net.calls if c[0] == "backward"} == {2}
    assert np.all(net.b == 0.0)  # only update_fn touched the parameters


def test_resume_continues_bit_for_bit(tmp_path):
    ds = linear_dataset(np.random.default_rng(5))

    def setup():
        return LinearNet(1, 1), Adam(0.05)

    net, opt = setup()
    full = train(net, ds, MSELoss(), opt, 6, 5, np.random.default_rng(11))

    net2, opt2 = setup()
    rng = np.random.default_rng(11)
    first = train(net2, ds, MSELoss(), opt2, 3, 5, rng)
    path = tmp_path / "ckpt.npz"
    np.savez(path, **{f"net/{k}": v for k, v in net2.params().items()},
             **{f"opt/{k}": v for k, v in opt2.state_dict().items()})  # fmt: skip
    (tmp_path / "rng.json").write_text(json.dumps(rng.bit_generator.state))
    (tmp_path / "hist.json").write_text(json.dumps(first.as_dict()))

    net3, opt3 = setup()
    with np.load(path) as ckpt:
        for k, v in net3.params().items():
            v[...] = ckpt[f"net/{k}"]
        opt3.load_state_dict(
            {k[4:]: ckpt[k] for k in ckpt.files if k.startswith("opt/")}
        )
    rng3 = np.random.default_rng()
    rng3.bit_generator.state = json.loads((tmp_path / "rng.json").read_text())
    hist = History.from_dict(json.loads((tmp_path / "hist.json").read_text()))
    resumed = train(net3, ds, MSELoss(), opt3, 6, 5, rng3, start_epoch=3, history=hist)
    np.testing.assert_array_equal(net3.w, net.w)
    np.testing.assert_array_equal(net3.b, net.b)
    assert resumed.epoch == full.epoch
    assert resumed.train_loss == full.train_loss
    assert resumed.test_metric == full.test_metric


def test_eval_every_and_history_json():
    ds = linear_dataset(np.random.default_rng(6))
    hist = train(LinearNet(1, 1), ds, MSELoss(), SGD(0.1), 5, 4,
                 np.random.default_rng(0), eval_every=2)  # fmt: skip
    evaluated = [not np.isnan(v) for v in hist.test_metric]
    assert evaluated == [False, True, False, True, True]
    data = json.loads(json.dumps(hist.as_dict()))
    assert data["test_metric"][0] is None
    again = History.from_dict(data)
    assert again.train_loss == hist.train_loss and np.isnan(again.test_metric[0])


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_divergence_is_reported():
    ds = linear_dataset(np.random.default_rng(7))
    with pytest.raises(FloatingPointError, match="epoch .* lower the learning rate"):
        train(LinearNet(1, 1), ds, MSELoss("sum"), SGD(1e6), 200, 12,
              np.random.default_rng(0))  # fmt: skip


def test_train_argument_errors():
    ds = linear_dataset(np.random.default_rng(8))
    net = LinearNet(1, 1)
    rng = np.random.default_rng(0)
    with pytest.raises(ParameterError, match="parameter 'net'.*no method 'forward'"):
        train(object(), ds, MSELoss(), SGD(0.1), 1, 1, rng)
    with pytest.raises(ParameterError, match="parameter 'optimizer'"):
        train(net, ds, MSELoss(), None, 1, 1, rng)
    with pytest.raises(ParameterError, match="parameter 'batch_size'"):
        train(net, ds, MSELoss(), SGD(0.1), 1, 0, rng)
    with pytest.raises(ParameterError, match="parameter 'rng'"):
        train(net, ds, MSELoss(), SGD(0.1), 1, 1, 0)
    with pytest.raises(ParameterError, match="parameter 'clip'"):
        train(net, ds, MSELoss(), SGD(0.1), 1, 1, rng, clip=0.0)
    with pytest.raises(ParameterError, match="parameter 'history'"):
        train(net, ds, MSELoss(), SGD(0.1), 1, 1, rng, history=History("x"))


# ------------------------------------------------------------- evaluation


def test_evaluate_regression_in_data_units_on_test_steps():
    ds = load_airline()
    net = LinearNet(1, 1)
    net.w[...] = 1.0  # persistence: predict the current month
    res = evaluate(net, ds)
    assert res["test_rmse"] == pytest.approx(persistence_rmse(ds), rel=1e-12)
    assert res["mask"].sum() == 48
    np.testing.assert_allclose(
        res["predictions"][0, 95:, 0], ds.inverse_transform(ds.x_test[0, 95:, 0])
    )
    train_res = evaluate(net, ds, "train")
    raw = ds.inverse_transform(ds.x_train[0, :, 0])
    truth = ds.inverse_transform(ds.y_train[0, :, 0])
    assert train_res["train_rmse"] == pytest.approx(
        np.sqrt(np.mean((raw - truth) ** 2))
    )


def test_evaluate_classification_and_batches():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(7, 3, 2))
    y = (x[:, -1, 0] > 0).astype(int)
    ds = Dataset("c", "classification", x, y, np.full(7, 3), x, y, np.full(7, 3),
                 n_classes=2)  # fmt: skip
    net = LinearNet(2, 2, output="last", softmax=True)
    net.w[...] = [[-5.0, 0.0], [5.0, 0.0]]
    res = evaluate(net, ds, batch_size=3, seed=5)
    assert res["test_accuracy"] == 1.0
    np.testing.assert_array_equal(res["predictions"], y)
    assert [c[4] for c in forward_batches(net)] == [5, 6, 7]
    net.w[...] = -net.w
    assert evaluate(net, ds)["test_accuracy"] == 0.0


def test_evaluate_rejects_wrong_output_shape():
    ds = load_airline()
    with pytest.raises(ParameterError, match="parameter 'net'.*shape"):
        evaluate(LinearNet(1, 2), ds)


# ------------------------------------------------------- the real layers


def test_lstm_on_airline_learns_and_is_reproducible():
    ds = load_airline()
    results = []
    for _ in range(2):
        rng = np.random.default_rng(0)
        net = Network(LSTM(1, 15, rng=rng), Dense(15, 1, "sigmoid", rng=rng), "all")
        hist = train(net, ds, MSELoss("sum"), SGD(0.01, momentum=0.9), 40, 1, rng,
                     eval_every=10)  # fmt: skip
        results.append((hist, net.params()))
    (hist, params), (hist2, params2) = results
    assert hist.train_loss[-1] < 0.3 * hist.train_loss[0]
    assert hist.train_loss == hist2.train_loss
    for k in params:
        np.testing.assert_array_equal(params[k], params2[k])
    # the first epoch's summed loss over 95 steps, as an RMSE in passengers
    first_rmse = np.sqrt(hist.train_loss[0] / 95) * ds.scaler.span
    assert evaluate(net, ds, "train")["train_rmse"] < 0.6 * first_rmse
    assert np.isfinite(hist.test_metric[-1])


def test_lstm_on_japanese_vowels_short_run():
    ds = load_japanese_vowels()
    rng = np.random.default_rng(0)
    net = Network(LSTM(12, 14, rng=rng), Dense(14, 9, "softmax", rng=rng), "last")
    hist = train(net, ds, CrossEntropyLoss(), RMSprop(0.01), 8, 50, rng,
                 eval_every=8)  # fmt: skip
    assert hist.train_loss[-1] < 0.5 * hist.train_loss[0]
    assert hist.test_metric[-1] > 0.8


@pytest.mark.slow
def test_lstm_on_japanese_vowels_reaches_95_percent():
    ds = load_japanese_vowels()
    rng = np.random.default_rng(0)
    net = Network(LSTM(12, 14, rng=rng), Dense(14, 9, "softmax", rng=rng), "last")
    hist = train(net, ds, CrossEntropyLoss(), RMSprop(0.01), 50, 50, rng,
                 eval_every=50)  # fmt: skip
    assert hist.test_metric[-1] >= 0.95
