"""One BLAS thread while fitting.

The fits are thousands of tiny (3–5 parameter) problems. Multi-threaded OpenBLAS spins its
threads for each of them, and on a busy machine that made scipy's L-BFGS-B ~40× slower. This
limits the OpenBLAS copies loaded in this process (numpy's and scipy's) to one thread for the
duration of a `with` block, and restores them afterwards; where that is not possible it does
nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator

_SUFFIXES = ("", "_", "64_", "_64_")


@functools.cache
def _openblas_libs() -> list[tuple[object, object]]:
    """(get, set) pairs of thread-count functions of each OpenBLAS loaded in this process."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    pairs = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in _SUFFIXES:
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    getter.restype = ctypes.c_int
                    pairs.append((getter, setter))
                    break
            else:
                continue
            break
    return pairs


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    import numpy  # noqa: F401 - make sure the BLAS libraries are loaded before the scan
    import scipy.optimize  # noqa: F401

    saved = []
    for getter, setter in _openblas_libs():
        try:
            before = int(getter())
            setter(ctypes.c_int(1))
            saved.append((setter, before))
        except Exception:  # noqa: BLE001 - best effort only
            continue
    try:
        yield
    finally:
        for setter, before in saved:
            with contextlib.suppress(Exception):
                setter(ctypes.c_int(before))
