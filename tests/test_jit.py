"""numba caches are dropped when the jitted sources they depend on change."""

from crossbar.jit import STAMP_NAME, drop_stale_caches, source_fingerprint


def _package(tmp_path, name, text):
    pkg = tmp_path / name
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "kernels.py").write_text(text)
    return pkg


def test_caches_dropped_only_when_jitted_sources_change(tmp_path):
    low = _package(tmp_path, "low", "@njit\ndef g(): return 2\n")
    high = _package(tmp_path, "high", "@njit\ndef f(): return g()\n")
    (high / "cli.py").write_text("print('no kernels here')\n")
    cached = high / "__pycache__" / "kernels.f-2.py311.nbi"
    other = high / "__pycache__" / "kernels.cpython-311.pyc"
    for path in (cached, other):
        path.write_text("")

    # No fingerprint yet: caches of unknown age go.
    assert drop_stale_caches(high, depends_on=[low])
    assert not cached.exists() and other.exists()
    stamp = (high / "__pycache__" / STAMP_NAME).read_text()
    assert stamp == source_fingerprint([high, low])

    cached.write_text("")
    assert not drop_stale_caches(high, depends_on=[low])  # same sources
    (high / "cli.py").write_text("print('still no kernels')\n")
    assert not drop_stale_caches(high, depends_on=[low])  # not jitted code
    assert cached.exists()

    # A changed callee in the package depended on drops the caller's caches.
    (low / "kernels.py").write_text("@njit\ndef g(): return 3\n")
    assert drop_stale_caches(high, depends_on=[low])
    assert not cached.exists()
