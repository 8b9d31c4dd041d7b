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


def test_a_medium_body_takes_the_start_of_a_pooled_buffer() -> None:
    """The small layers of an image (64 KiB to 1 MiB) reuse the pool's buffers too."""
    BufferLease._free.clear()
    first = BufferLease()
    whole = first.get(BUFFER)
    first.release()
    lease = BufferLease()
    medium = lease.get(256 << 10)
    assert len(medium) == 256 << 10
    assert address(medium) == address(whole)  # the start of the pooled one, page-aligned
    lease.release()
    assert len(BufferLease._free) == 1 and len(BufferLease._free[0]) == BUFFER  # back whole
    assert len(BufferLease().get((64 << 10) - 1)) == (64 << 10) - 1  # below: not pooled
    BufferLease._free.clear()
