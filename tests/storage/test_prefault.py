"""Prefaulting the active segment (storage/prefault.py): pages ahead of the append cursor are
populated by a background thread; the bytes, crash recovery and sealing are unchanged."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest
from storage_helpers import make_batch

from logstream.codec import iter_batches
from logstream.storage import LogManager, PartitionLog, TopicConfig, libc, prefault

CONFIG = TopicConfig(segment_bytes=4 << 20, flush_policy="never", retention_ms=-1)

needs_populate = pytest.mark.skipif(
    not prefault.shared().enabled, reason="madvise(MADV_POPULATE_WRITE) unavailable"
)


def _mapped_resident_pages(seg, start: int, end: int) -> int:
    """Pages of ``[start, end)`` of the segment's map that are resident (mincore)."""
    import ctypes

    mincore = libc.function("mincore", [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p])
    assert mincore is not None
    page = prefault.PAGE
    start -= start % page
    n = (end - start + page - 1) // page
    vec = (ctypes.c_ubyte * n)()
    assert mincore(libc.map_address(seg.active_file.map) + start, end - start, vec) == 0
    return sum(v & 1 for v in vec)


def open_log(path, *, prefault_pages=True, config=CONFIG, clean=False):
    return PartitionLog(
        path,
        topic="t",
        partition=0,
        config=config,
        prefault_pages=prefault_pages,
        clean_shutdown=clean,
    )


@needs_populate
def test_pages_ahead_of_the_cursor_are_populated(tmp_path):
    log = open_log(tmp_path / "p")
    batch = make_batch(200, value_size=500)  # ~100 KB
    for _ in range(5):
        log.append(batch)
    assert prefault.shared().idle()
    seg = log.segments()[-1]
    assert seg.active_file.populated >= seg.size + prefault.MIN_AHEAD
    # The populated pages are resident in the map: the next appends will not fault there.
    ahead = _mapped_resident_pages(seg, seg.size, seg.active_file.populated)
    populated = seg.active_file.populated
    assert ahead == (populated - (seg.size - seg.size % prefault.PAGE)) // prefault.PAGE
    log.close()


@needs_populate
def test_the_window_grows_with_the_segment_and_is_capped(tmp_path):
    log = open_log(tmp_path / "p", config=TopicConfig(segment_bytes=64 << 20, flush_policy="never"))
    log.append(make_batch(1))
    assert prefault.shared().idle()
    seg = log.segments()[-1]
    small = seg.active_file.populated - seg.size
    assert small <= prefault.MIN_AHEAD + prefault.PAGE  # one tiny append: a few pages only
    big = make_batch(1000, value_size=1000)  # ~1 MB
    for _ in range(20):
        log.append(big)
    assert prefault.shared().idle()
    ahead = seg.active_file.populated - seg.size
    assert prefault.MAX_AHEAD // 2 <= ahead <= prefault.MAX_AHEAD + prefault.PAGE
    log.close()


def test_no_prefault_when_disabled(tmp_path):
    log = open_log(tmp_path / "p", prefault_pages=False)
    log.append(make_batch(100, value_size=500))
    seg = log.segments()[-1]
    assert seg.active_file.populated == 0 and not seg.active_file.prefault_pending
    log.close()


def test_populated_tail_reads_as_zeros_and_recovery_keeps_everything(tmp_path):
    """A crash with populated (dirty, zero-filled) pages past the log end: the file's tail is
    zeros, recovery cuts nothing and keeps every batch (the zero-tail rule)."""
    path = tmp_path / "p"
    log = open_log(path)
    batches = [make_batch(50, value_size=100, tag=i) for i in range(40)]
    for b in batches:
        log.append(b)
    prefault.shared().idle()
    seg = log.segments()[-1]
    size, populated = seg.size, seg.active_file.populated
    seg.active_file.map.flush()  # the populated zero pages reach the file too
    for s in log.segments():  # crash: drop handles, trim nothing
        s.abandon()
    raw = seg.log_path.read_bytes()
    assert len(raw) == CONFIG.segment_bytes
    assert not any(raw[size:populated])
    again = open_log(path)
    assert again.recovery_report.bytes_truncated == 0
    assert again.log_end_offset == 40 * 50
    got = [b.value(0) for b in iter_batches(again.read(0, 1 << 30))]
    assert got == [b"%d:0:" % i + b"x" * (100 - len(b"%d:0:" % i)) for i in range(40)]
    again.close()


def test_rolls_and_closes_race_with_the_prefault_thread(tmp_path):
    """Tiny segments roll constantly while the thread populates them; sealing waits for a
    running madvise, so no map is unmapped under it and every byte reads back."""
    config = TopicConfig(segment_bytes=32 << 10, flush_policy="never", retention_ms=-1)
    calls = prefault.shared().calls
    with LogManager.open(tmp_path / "d") as mgr:
        mgr.create_topic("t", 2, config)
        errors: list[BaseException] = []

        def writer(p: int) -> None:
            try:
                log = mgr.get_log("t", p)
                for i in range(300):
                    log.append(make_batch(20, value_size=300, tag=i))
                    if i % 4 == 0:  # a new segment costs ~no time now (no directory
                        time.sleep(0.0002)  # fsync): leave the thread room to race
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(p,)) for p in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for p in range(2):
            log = mgr.get_log("t", p)
            assert log.segment_count > 40
            offsets = [int(o) for b in iter_batches(log.read(0, 1 << 30)) for o in b.offsets]
            assert offsets == list(range(300 * 20))
    if prefault.shared().enabled:
        assert prefault.shared().calls > calls + 40


def test_kernel_without_populate_write_turns_prefaulting_off(tmp_path):
    pf = prefault.Prefaulter(madvise=lambda addr, length: errno.EINVAL)
    log = open_log(tmp_path / "p", prefault_pages=pf)
    log.append(make_batch(10))  # creates the segment with this prefaulter and requests
    assert pf.idle()
    assert not pf.enabled and pf.calls == 1
    seg = log.segments()[-1]
    assert seg.active_file.populated == 0
    log.append(make_batch(10))  # appends go on, faulting as before
    assert log.log_end_offset == 20
    log.close()


def test_forked_child_gets_a_fresh_prefaulter(tmp_path):
    parent = prefault.shared()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        ok = prefault.shared() is not parent and prefault.shared()._thread is None
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.close(r)
    os.waitpid(pid, 0)
