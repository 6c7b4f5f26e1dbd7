"""Progress of a sweep, phase by phase: compiling program k of N (and how long it took), training
chunk c of M of each program, with an ETA computed from training alone.

`make(progress, total)`:
* None / False: nothing;
* True: a tqdm bar when stderr is a terminal, else plain log lines on stderr (one per phase and at
  most one every LOG_EVERY_S seconds while training), which is what a CI log or `nohup` file wants;
* "bar" / "log": force either;
* a callable `fn(done, total)` (config-epochs), called after each segment.

The ETA never counts compilation or chunks resumed from checkpoints: it is the remaining
config-epochs times the training time per config-epoch measured so far in this call. tqdm's own ETA
would count the first program's compile as training (a 2.5-minute run once read 2:32:30).
"""

from __future__ import annotations

import sys
import time
from typing import Callable
from ..errors import UserError

LOG_EVERY_S = 10.0


def _hms(s: float) -> str:
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """The shared bookkeeping; subclasses only draw."""

    def __init__(self, total: int):
        self.total, self.done = int(total), 0
        self.trained = 0  # config-epochs trained in this call (not resumed)
        self.train_s = 0.0
        self._t = None  # start of the current training stretch
        self.where = ""

    # -- events, called by the engine
    def compiling(self, k: int, n: int, what: str = "") -> None:
        self._stop_clock()
        self.where = f"compiling program {k}/{n}"
        self.phase(f"{self.where}{(' (' + what + ')') if what else ''} ...")

    def compiled(self, k: int, n: int, seconds: float, source: str) -> None:
        if source == "process":
            self.phase(f"program {k}/{n}: already compiled in this process")
        else:
            how = "loaded from the disk cache" if source == "disk" else "compiled"
            self.phase(f"program {k}/{n}: {how} in {seconds:.1f} s")

    def chunk(self, k: int, n: int, c: int, m: int, configs: int) -> None:
        self.where = f"program {k}/{n}, chunk {c}/{m}"
        self.phase(f"training {self.where} ({configs} configs)")
        self._t = time.perf_counter()

    def resumed(self, epochs: int) -> None:
        self.done += epochs
        self.draw()

    def update(self, epochs: int) -> None:
        now = time.perf_counter()
        if self._t is not None:
            self.train_s += now - self._t
        self._t = now
        self.done += epochs
        self.trained += epochs
        self.draw()

    def _stop_clock(self) -> None:
        if self._t is not None:
            self.train_s += time.perf_counter() - self._t
            self._t = None

    def eta(self) -> float | None:
        if self.trained == 0:
            return None
        return (self.total - self.done) * self.train_s / self.trained

    def status(self) -> str:
        eta = self.eta()
        pct = 100.0 * self.done / max(self.total, 1)
        return (f"{self.done}/{self.total} config-epochs ({pct:.0f}%), "
                f"ETA {_hms(eta) if eta is not None else '?'} (training only)")

    # -- drawing
    def phase(self, msg: str) -> None:
        pass

    def draw(self) -> None:
        pass

    def close(self) -> None:
        self._stop_clock()


class _Callback(Progress):
    def __init__(self, fn: Callable[[int, int], None], total: int):
        super().__init__(total)
        self.fn = fn

    def draw(self) -> None:
        self.fn(self.done, self.total)


class _Log(Progress):
    def __init__(self, total: int, stream=None):
        super().__init__(total)
        self.stream = stream or sys.stderr
        self._last = -float("inf")

    def _print(self, line: str) -> None:
        print(f"jaxfit: {line}", file=self.stream, flush=True)

    def phase(self, msg: str) -> None:
        self._print(msg)

    def draw(self) -> None:
        now = time.perf_counter()
        if now - self._last >= LOG_EVERY_S or self.done >= self.total:
            self._last = now
            self._print(f"{self.where}: {self.status()}")


class _Bar(Progress):
    def __init__(self, total: int):
        super().__init__(total)
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="cfg-epoch", desc="jaxfit", dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    def phase(self, msg: str) -> None:
        self.bar.set_description_str(f"jaxfit: {self.where}")
        self.bar.write(f"jaxfit: {msg}", file=sys.stderr)

    def draw(self) -> None:
        eta = self.eta()
        self.bar.set_postfix_str(f"ETA {_hms(eta)}" if eta is not None else "ETA ?", refresh=False)
        self.bar.n = self.done
        self.bar.refresh()

    def close(self) -> None:
        super().close()
        self.bar.close()


def make(progress, total: int) -> Progress | None:
    if progress is None or progress is False:
        return None
    if callable(progress) and not isinstance(progress, (bool, str)):
        return _Callback(progress, total)
    if progress == "bar" or (progress is True and sys.stderr.isatty()):
        return _Bar(total)
    if progress in (True, "log"):
        return _Log(total)
    raise UserError(f"progress={progress!r} is invalid: allowed values are None, False, True, 'bar', 'log' "
                     "or a callable(done, total)")
