"""Receive buffers (web/body.py): page-aligned, reused across requests only once released."""

from __future__ import annotations

import ctypes

from ociregistry.web.body import BUFFER, PAGE, BufferLease


def address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def test_whole_buffers_are_page_aligned_and_reused_only_after_release() -> None:
    BufferLease._free.clear()
    first = BufferLease()
    a, b = first.get(BUFFER), first.get(BUFFER)
    assert address(a) % PAGE == 0 and address(b) % PAGE == 0
    other = BufferLease()
    c = other.get(BUFFER)  # a's and b's lease still holds them: a new one
    assert address(c) not in (address(a), address(b))
    first.release()
    d = other.get(BUFFER)
    assert address(d) in (address(a), address(b))
    other.release()


def test_small_buffers_are_not_pooled_and_the_pool_is_bounded() -> None:
    BufferLease._free.clear()
    lease = BufferLease()
    small = lease.get(1000)
    assert len(small) == 1000
    for _ in range(BufferLease.KEEP + 3):
        lease.get(BUFFER)
    lease.release()
    assert len(BufferLease._free) == BufferLease.KEEP
    BufferLease._free.clear()
