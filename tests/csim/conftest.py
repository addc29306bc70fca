"""Fixtures of the C-simulation tests: the build cache in the test cache, backends built once."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from fxemu.hw.toolchain import find_toolchain
from vendor import cxx

from fxemu import BackendUnavailable
from fxemu.backends import get_backend
from fxemu.backends.csim import CsimBackend
from fxemu.policy import PRESETS, Policy


@pytest.fixture(scope="session", autouse=True)
def csim_cache() -> Iterator[str]:
    """Builds go to ``csim/`` in the test cache (kept between sessions, like tests/vendor's)."""
    old = os.environ.get("FXEMU_CACHE_DIR")
    path = str(cxx.cache_dir() / "csim")
    os.environ["FXEMU_CACHE_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("FXEMU_CACHE_DIR", None)
    else:
        os.environ["FXEMU_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def toolchain_ok() -> None:
    try:
        find_toolchain()
    except BackendUnavailable as e:
        pytest.skip(f"C-simulation unavailable: {e}")


_BACKENDS: dict[str, CsimBackend] = {}


@pytest.fixture(scope="session")
def csim(toolchain_ok: None) -> Callable[[str | Policy], CsimBackend]:
    """``csim(policy) -> CsimBackend``, compiled once per policy per session."""

    def make(policy: str | Policy) -> CsimBackend:
        pol = PRESETS[policy] if isinstance(policy, str) else policy
        key = repr(pol)
        if key not in _BACKENDS:
            _BACKENDS[key] = get_backend("csim", pol, 0)
        return _BACKENDS[key]

    return make
