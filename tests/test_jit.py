"""numba caches are dropped when the jitted sources change."""

from crossbar.jit import STAMP_NAME, drop_stale_caches, source_fingerprint


def _package(tmp_path, name, text):
    pkg = tmp_path / name
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "kernels.py").write_text(text)
    return pkg


def test_caches_dropped_only_when_sources_change(tmp_path):
    a = _package(tmp_path, "a", "@njit\ndef f(): return 1\n")
    b = _package(tmp_path, "b", "@njit\ndef g(): return 2\n")
    (b / "cli.py").write_text("print('no kernels here')\n")
    cached = [a / "__pycache__" / "kernels.f-3.py311.nbi", b / "__pycache__" / "k.nbc"]
    other = a / "__pycache__" / "kernels.cpython-311.pyc"
    for path in [*cached, other]:
        path.write_text("")

    assert drop_stale_caches([a, b])  # no fingerprint yet: caches of unknown age
    assert not any(p.exists() for p in cached) and other.exists()
    stamp = (a / "__pycache__" / STAMP_NAME).read_text()
    assert stamp == source_fingerprint([a, b])

    for path in cached:
        path.write_text("")
    assert not drop_stale_caches([a, b])  # same sources: caches kept
    assert all(p.exists() for p in cached)

    (b / "cli.py").write_text("print('still no kernels')\n")
    assert not drop_stale_caches([a, b])  # not jitted code: caches kept

    # A change in one package drops the caches of both (callers inline callees).
    (b / "kernels.py").write_text("@njit\ndef g(): return 3\n")
    assert drop_stale_caches([a, b])
    assert not any(p.exists() for p in cached)
    assert source_fingerprint([a, b]) != stamp
