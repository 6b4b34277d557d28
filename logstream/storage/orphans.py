"""Partition directories that no topic metadata accounts for, found at open.

A ``<topic>-<n>`` directory is an orphan when ``meta/<topic>.json`` does not exist, or
says the topic has ``n`` partitions or fewer. How each came to be, and what the open does:

* a grow (add partitions) interrupted before it rewrote the metadata: the new directories
  never took a write (appends start after the grow returns): removed, with a warning;
* a create or delete of older versions interrupted by a crash (they wrote no intent, see
  ``topic_meta.py``), or a lost metadata file: directories without data are removed with
  a warning; directories holding data are never deleted on a guess: the caller restores
  the topic (default config) and logs an error naming the missing file.

Also here: :func:`finish_interrupted`, for a topic whose metadata still says a create or a
delete was under way when the broker stopped (versions that write that intent).

Directory names are ``files.partition_dir_name`` (``<topic>-<n>``, the topic may contain
``-``); anything else in the data directory is left alone. Called by the opening thread
only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from logstream.errors import LogstreamError
from logstream.storage import files
from logstream.storage.config import MAX_PARTITIONS, validate_topic_name
from logstream.storage.topic_meta import CREATING, TopicMeta

log = logging.getLogger("logstream.storage")


def _parse(name: str) -> tuple[str, int] | None:
    topic, sep, number = name.rpartition("-")
    if not sep or not number.isdigit() or (number != "0" and number.startswith("0")):
        return None
    p = int(number)
    if p >= MAX_PARTITIONS:
        return None
    try:
        validate_topic_name(topic)
    except LogstreamError:
        return None
    return topic, p


def find_partition_dirs(data_dir: Path, counts: Mapping[str, int]) -> dict[str, list[int]]:
    """Remove the directories of interrupted grows (``counts``: the partition count of
    every topic with metadata); return the rest of the orphans by topic name (the
    partition numbers found)."""
    found: dict[str, list[int]] = {}
    for entry in os.scandir(data_dir):
        if not entry.is_dir(follow_symlinks=False):
            continue
        parsed = _parse(entry.name)
        if parsed is None:
            continue
        name, p = parsed
        count = counts.get(name)
        if count is None:
            found.setdefault(name, []).append(p)
        elif p >= count:
            log.warning(
                "removing %s: partition %d of %r was being added when the broker stopped",
                entry.path,
                p,
                name,
            )
            _remove(Path(entry.path))
    return found


def adopt(data_dir: Path, name: str, numbers: list[int]) -> bool:
    """True when some of the directories hold data (the caller restores the topic);
    otherwise they are removed, with a warning, and False."""
    dirs = [data_dir / files.partition_dir_name(name, p) for p in numbers]
    if any(_holds_data(d) for d in dirs):
        return True
    log.warning(
        "removing %d empty partition directories of %r, which has no metadata "
        "(a create or delete interrupted by a crash)",
        len(dirs),
        name,
    )
    for d in dirs:
        _remove(d)
    return False


def _holds_data(directory: Path) -> bool:
    for entry in os.scandir(directory):
        if entry.name.endswith(files.LOG_SUFFIX) and entry.stat().st_size > 0:
            return True
    return False


def _remove(directory: Path) -> None:
    doomed = directory.with_name(directory.name + files.DELETED_SUFFIX)
    os.replace(directory, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def finish_interrupted(data_dir: Path, meta: TopicMeta) -> None:
    """A create or delete that a crash interrupted: roll the create back, finish the
    delete (their partitions never served a write that was acknowledged after the
    create, or are no longer wanted)."""
    what = "rolling back its create" if meta.state == CREATING else "finishing its delete"
    log.warning(
        "topic %r was being %s when the broker stopped: %s",
        meta.name,
        "created" if meta.state == CREATING else "deleted",
        what,
    )
    for p in range(meta.partitions):
        path = data_dir / files.partition_dir_name(meta.name, p)
        doomed = path.with_name(path.name + files.DELETED_SUFFIX)
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    files.remove_quietly(data_dir / files.META_DIR / f"{meta.name}.json")
