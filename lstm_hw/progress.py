"""Progress of long work: tqdm bars when switched on, log lines otherwise.

The library never decides on its own to draw bars: the command line turns
them on (:func:`set_enabled`, or ``enabled=True`` per call). Otherwise a
:class:`Progress` logs a line at INFO level about every tenth of the work,
so a run's log still shows how far it got.

Examples
--------
>>> with Progress(total=epochs, desc="insitu", unit="epoch") as bar:  # doctest: +SKIP
...     for epoch in range(epochs):
...         loss = train_one_epoch()
...         bar.update(loss=loss)
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterable, Iterator

from crossbar.validation import check_number

logger = logging.getLogger(__name__)

__all__ = ["Progress", "TqdmLoggingHandler", "enabled", "set_enabled", "track"]

_ENABLED = False

# Without a known total, log a line every this many updates.
_LOG_EVERY_UNKNOWN = 100


def set_enabled(flag: bool) -> None:
    """Turn progress bars on or off for every later :class:`Progress`."""
    global _ENABLED
    _ENABLED = bool(flag)


def enabled() -> bool:
    """Whether progress bars are on."""
    return _ENABLED


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """A progress bar, or periodic log lines when bars are off.

    Parameters
    ----------
    total : int or None
        Number of steps expected, or None if unknown.
    desc : str
        Short label ("insitu", "programming").
    unit : str
        Name of one step ("epoch", "batch").
    enabled : bool, optional
        Draw a bar; default the global setting of :func:`set_enabled`.
    log : logging.Logger, optional
        Where log lines go when there is no bar; default this module's logger.
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        *,
        enabled: bool | None = None,
        log: logging.Logger | None = None,
    ):
        if total is not None:
            check_number("total", total, low=0, integer=True)
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = 0
        self.info: dict[str, object] = {}
        self._log = log if log is not None else logger
        self._bar = None
        self._closed = False
        if total:
            self._every = max(1, math.ceil(total / 10))
        else:
            self._every = _LOG_EVERY_UNKNOWN
        if _ENABLED if enabled is None else enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=desc or None, unit=unit, file=sys.stderr, leave=False
            )

    def update(self, n: int = 1, **info) -> None:
        """Advance by ``n`` steps; ``info`` (e.g. ``loss=0.12``) is shown too."""
        self.n += n
        if info:
            self.info.update(info)
        if self._bar is not None:
            if info:
                self._bar.set_postfix(
                    {k: _fmt(v) for k, v in self.info.items()}, refresh=False
                )
            self._bar.update(n)
            return
        if self.n // self._every != (self.n - n) // self._every or (
            self.total and self.n >= self.total
        ):
            self._log_line()

    def _log_line(self) -> None:
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc}:"] if self.desc else []
        parts += [done, self.unit]
        parts += [f"{k}={_fmt(v)}" for k, v in self.info.items()]
        self._log.info("%s", " ".join(parts))

    def close(self) -> None:
        """Finish the bar (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(
    iterable: Iterable,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    *,
    enabled: bool | None = None,
) -> Iterator:
    """Iterate over ``iterable`` while reporting progress (see :class:`Progress`)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(total, desc, unit, enabled=enabled) as bar:
        for item in iterable:
            yield item
            bar.update()


class TqdmLoggingHandler(logging.StreamHandler):
    """A console handler that prints above an active progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:
            self.handleError(record)
