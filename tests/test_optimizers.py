"""Optimizers against hand-written update sequences and torch.optim."""

import math

import numpy as np
import pytest

from crossbar.validation import ParameterError
from lstm_hw.optimizers import SGD, Adam, RMSprop, clip_grad_norm

N_STEPS = 6


def make_problem(seed=0):
    """Parameters (as views of one owner array, like a layer's) and a
    sequence of gradients."""
    rng = np.random.default_rng(seed)
    owner = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=3)}
    grads = [
        {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=3)} for _ in range(N_STEPS)
    ]
    return owner, grads


def run(opt, owner, grads):
    params = {k: v[...] for k, v in owner.items()}  # views
    for g in grads:
        opt.step(params, {k: v.copy() for k, v in g.items()})
    return owner


# Scalar references, written from the update rules element by element.


def ref_sgd(p0, gs, lr, mu=0.0, nesterov=False):
    out = np.empty_like(p0)
    for i in np.ndindex(p0.shape):
        p, v = p0[i], 0.0
        for k, g in enumerate(gs):
            gi = g[i]
            if mu == 0.0:
                p = p - lr * gi
                continue
            v = gi if k == 0 else mu * v + gi
            p = p - lr * (gi + mu * v if nesterov else v)
        out[i] = p
    return out


def ref_rmsprop(p0, gs, lr, alpha, eps):
    out = np.empty_like(p0)
    for i in np.ndindex(p0.shape):
        p, s = p0[i], 0.0
        for g in gs:
            s = alpha * s + (1 - alpha) * g[i] ** 2
            p = p - lr * g[i] / (math.sqrt(s) + eps)
        out[i] = p
    return out


def ref_adam(p0, gs, lr, b1, b2, eps):
    out = np.empty_like(p0)
    for i in np.ndindex(p0.shape):
        p, m, v = p0[i], 0.0, 0.0
        for t, g in enumerate(gs, start=1):
            m = b1 * m + (1 - b1) * g[i]
            v = b2 * v + (1 - b2) * g[i] ** 2
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            p = p - lr * m_hat / (math.sqrt(v_hat) + eps)
        out[i] = p
    return out


CASES = [
    (lambda: SGD(0.1), lambda p, g: ref_sgd(p, g, 0.1)),
    (lambda: SGD(0.05, momentum=0.9), lambda p, g: ref_sgd(p, g, 0.05, 0.9)),
    (
        lambda: SGD(0.05, momentum=0.8, nesterov=True),
        lambda p, g: ref_sgd(p, g, 0.05, 0.8, True),
    ),
    (
        lambda: RMSprop(0.01, alpha=0.99, eps=1e-8),
        lambda p, g: ref_rmsprop(p, g, 0.01, 0.99, 1e-8),
    ),
    (
        lambda: Adam(0.01, betas=(0.9, 0.999), eps=1e-8),
        lambda p, g: ref_adam(p, g, 0.01, 0.9, 0.999, 1e-8),
    ),
]
IDS = ["sgd", "momentum", "nesterov", "rmsprop", "adam"]


@pytest.mark.parametrize(("make", "ref"), CASES, ids=IDS)
def test_against_hand_written_reference(make, ref):
    owner, grads = make_problem()
    start = {k: v.copy() for k, v in owner.items()}
    run(make(), owner, grads)
    for key in owner:
        expected = ref(start[key], [g[key] for g in grads])
        np.testing.assert_allclose(owner[key], expected, rtol=1e-13, atol=1e-15)


def _torch_optimizer(torch, name, tensors):
    if name == "sgd":
        return torch.optim.SGD(tensors, lr=0.1)
    if name == "momentum":
        return torch.optim.SGD(tensors, lr=0.05, momentum=0.9)
    if name == "nesterov":
        return torch.optim.SGD(tensors, lr=0.05, momentum=0.8, nesterov=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(tensors, lr=0.01, alpha=0.99, eps=1e-8)
    return torch.optim.Adam(tensors, lr=0.01, betas=(0.9, 0.999), eps=1e-8)


@pytest.mark.torch
@pytest.mark.parametrize(
    ("make", "name"), list(zip([c[0] for c in CASES], IDS, strict=True)), ids=IDS
)
def test_against_torch(make, name):
    torch = pytest.importorskip("torch")
    owner, grads = make_problem(1)
    tensors = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in owner.items()}
    topt = _torch_optimizer(torch, name, list(tensors.values()))
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        topt.step()
    run(make(), owner, grads)
    for k in owner:
        np.testing.assert_allclose(
            owner[k], tensors[k].detach().numpy(), rtol=1e-12, atol=1e-14
        )


def test_step_updates_views_in_place():
    layer_w = np.ones((2, 2))
    params = {"layer.w": layer_w}
    SGD(0.5).step(params, {"layer.w": np.full((2, 2), 2.0)})
    np.testing.assert_array_equal(layer_w, 0.0)


@pytest.mark.parametrize(("make", "ref"), CASES, ids=IDS)
def test_state_dict_resume_is_exact(tmp_path, make, ref):
    owner, grads = make_problem(2)
    resumed = {k: v.copy() for k, v in owner.items()}
    run(make(), owner, grads)

    first = make()
    run(first, resumed, grads[:3])
    path = tmp_path / "opt.npz"
    np.savez(path, **first.state_dict())
    second = make()
    with np.load(path) as f:
        second.load_state_dict(dict(f))
    assert second.step_count == 3
    run(second, resumed, grads[3:])
    for k in owner:
        np.testing.assert_array_equal(resumed[k], owner[k])


def test_state_dict_is_a_copy_with_plain_arrays():
    opt = Adam(0.1)
    owner, grads = make_problem()
    run(opt, owner, grads[:1])
    state = opt.state_dict()
    assert set(state) == {
        "lr",
        "beta1",
        "beta2",
        "eps",
        "step",
        "exp_avg/w",
        "exp_avg/b",
        "exp_avg_sq/w",
        "exp_avg_sq/b",
    }
    assert all(type(v) is np.ndarray for v in state.values())
    state["exp_avg/w"][...] = 99.0
    assert not np.any(opt.state["w"]["exp_avg"] == 99.0)


def test_load_state_dict_restores_hyperparameters():
    opt = SGD(0.1, momentum=0.5)
    opt.load_state_dict({"lr": np.array(0.2), "momentum": np.array(0.0), "step": 4})
    assert opt.lr == 0.2 and opt.momentum == 0.0 and opt.step_count == 4


def test_load_state_dict_errors_leave_state_unchanged():
    opt = RMSprop(0.1)
    owner, grads = make_problem()
    run(opt, owner, grads[:2])
    before = opt.state_dict()
    bad = dict(before)
    bad["square_avgg/w"] = bad.pop("square_avg/w")
    with pytest.raises(ParameterError, match="did you mean 'square_avg/w'"):
        opt.load_state_dict(bad)
    with pytest.raises(ParameterError, match="missing \\['alpha'\\]"):
        opt.load_state_dict({k: v for k, v in before.items() if k != "alpha"})
    bad = dict(before)
    bad["step"] = np.array(1.5)
    with pytest.raises(ParameterError, match="state\\['step'\\]"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert set(after) == set(before)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])


def test_step_errors():
    opt = SGD(0.1, momentum=0.9)
    params = {"w": np.zeros(3)}
    with pytest.raises(ParameterError, match="missing \\['w'\\], unexpected"):
        opt.step(params, {"v": np.zeros(3)})
    with pytest.raises(ParameterError, match="grads\\['w'\\]"):
        opt.step(params, {"w": np.zeros(4)})
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ParameterError, match="writable"):
        opt.step({"w": frozen}, {"w": np.zeros(3)})
    opt.step(params, {"w": np.ones(3)})
    with pytest.raises(ParameterError, match="momentum_buffer"):
        opt.step({"w": np.zeros(4)}, {"w": np.ones(4)})
    assert opt.step_count == 1


def test_constructor_errors():
    with pytest.raises(ParameterError, match="parameter 'lr'"):
        SGD(-1.0)
    with pytest.raises(ParameterError, match="parameter 'momentum'"):
        SGD(0.1, momentum=1.0)
    with pytest.raises(ParameterError, match="nesterov"):
        SGD(0.1, nesterov=True)
    with pytest.raises(ParameterError, match="parameter 'alpha'"):
        RMSprop(0.1, alpha=1.5)
    with pytest.raises(ParameterError, match="parameter 'betas'"):
        Adam(0.1, betas=0.9)
    with pytest.raises(ParameterError, match="parameter 'eps'"):
        Adam(0.1, eps=0.0)


# ------------------------------------------------------------ clipping


def test_clip_grad_norm_scales_to_max_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0, 4.0]])}
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0)
    total = math.sqrt(sum(np.sum(g**2) for g in grads.values()))
    assert total == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(grads["a"], [3.0 / (5.0 + 1e-6), 0.0])


def test_clip_grad_norm_leaves_small_gradients():
    grads = {"a": np.array([0.3, 0.4])}
    assert clip_grad_norm(grads, 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(grads["a"], [0.3, 0.4])


@pytest.mark.torch
def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    grads = {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=4)}
    tensors = [torch.zeros(v.shape, dtype=torch.float64) for v in grads.values()]
    for t, g in zip(tensors, grads.values(), strict=True):
        t.grad = torch.tensor(g.copy())
    ref = torch.nn.utils.clip_grad_norm_(tensors, 0.7)
    norm = clip_grad_norm(grads, 0.7)
    assert norm == pytest.approx(ref.item(), rel=1e-14)
    for t, g in zip(tensors, grads.values(), strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-14)


def test_clip_grad_norm_errors():
    with pytest.raises(ParameterError, match="parameter 'max_norm'"):
        clip_grad_norm({"a": np.ones(2)}, 0.0)
    with pytest.raises(ParameterError, match="parameter 'grads' must be finite"):
        clip_grad_norm({"a": np.array([np.nan])}, 1.0)
