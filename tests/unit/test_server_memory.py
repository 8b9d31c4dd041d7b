"""server_memory.py: start-up work in a forked child, the malloc arena cap, lazy modules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import pytest

from ociregistry.config import ConfigError
from ociregistry.lazy_import import lazy_module
from ociregistry.server_memory import run_in_child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")


def test_run_in_child_returns_the_result_and_leaves_no_import_behind():
    assert "xml.dom.minidom" not in sys.modules  # the module the step imports

    def step() -> tuple[int, str]:
        import xml.dom.minidom  # noqa: F401

        return os.getpid(), "key"

    pid, key = run_in_child(step)
    assert key == "key" and pid != os.getpid()
    assert "xml.dom.minidom" not in sys.modules


def test_run_in_child_raises_the_childs_exception_here():
    def step() -> None:
        raise ConfigError("database: no such file")

    with pytest.raises(ConfigError, match="no such file"):
        run_in_child(step)


def test_an_exception_that_does_not_pickle_comes_back_as_its_text():
    class Local(Exception):  # a local class cannot be pickled
        pass

    def step() -> None:
        raise Local("gone wrong")

    with pytest.raises(RuntimeError, match="gone wrong"):
        run_in_child(step)


def test_lazy_module_imports_on_first_use_from_many_threads():
    module = "ociregistry.web.v2_paging"  # anything not imported by now
    sys.modules.pop(module, None)
    lazy = lazy_module(module)
    assert module not in sys.modules
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(lazy.__name__)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [module] * 8 and module in sys.modules


ARENAS = textwrap.dedent("""
    import ctypes, os, re, sys, tempfile, threading
    from ociregistry.server_memory import limit_malloc_arenas
    if sys.argv[1] == "limit":
        assert limit_malloc_arenas()
    keep = []
    # Every new thread's first malloc takes an arena of its own, up to the cap; an
    # arena whose thread has ended is handed to the next one, so all stay alive
    # until all have allocated (else a fast machine reuses one or two arenas).
    together = threading.Barrier(8)
    def work():
        keep.append([bytearray(50_000) for _ in range(50)])
        together.wait(timeout=60)
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    path = tempfile.mktemp()
    f = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, f)
    libc.fclose(f)
    print(len(re.findall(r'<heap nr="', open(path).read())))
    os.unlink(path)
""")


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True, text=True,
                         env=env, timeout=120, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_malloc_arenas_are_capped_for_threads_started_afterwards():
    assert _arenas("free") > 2  # glibc's default: an arena per thread (up to 8 per CPU)
    assert _arenas("limit") <= 2


def test_an_explicit_malloc_arena_max_wins():
    code = "from ociregistry.server_memory import limit_malloc_arenas as l; print(l())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MALLOC_ARENA_MAX": "4"}, timeout=60, check=True)
    assert out.stdout.strip() == "False"
