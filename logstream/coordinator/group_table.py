"""The live consumer groups of a coordinator, each behind its own lock.

Lock order: the table's lock (guarding only the dict), then one group's lock; never two
group locks. A group that is deleted or expired is marked ``dead`` under its lock and
removed from the dict; a caller that was waiting for that lock looks the id up again and
gets the new group (or none).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from logstream.coordinator.group import Group, GroupSettings


class GroupTable:
    """``group id -> Group`` with the locking protocol above. Thread-safe."""

    def __init__(self, settings: GroupSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._groups: dict[str, Group] = {}

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._groups)

    def __contains__(self, group_id: object) -> bool:
        with self._lock:
            return group_id in self._groups

    def drop(self, group: Group) -> None:
        """Mark ``group`` dead and remove it (call with its lock held): a caller waiting
        for that lock looks again and makes a new one."""
        group.dead = True
        with self._lock:
            if self._groups.get(group.group_id) is group:
                del self._groups[group.group_id]

    @contextmanager
    def locked(self, group_id: str, *, create: bool = False) -> Iterator[Group | None]:
        """The live group ``group_id`` with its lock held (None, without a lock, when there
        is none and ``create`` is False)."""
        while True:
            with self._lock:
                group = self._groups.get(group_id)
                if group is None and create:
                    group = Group(group_id, self._settings)
                    self._groups[group_id] = group
            if group is None:
                yield None
                return
            with group.lock:
                if group.dead:
                    continue  # deleted meanwhile: look again
                yield group
                return

    @contextmanager
    def locked_admin(self, group_id: str) -> Iterator[tuple[Group, bool]]:
        """The group's lock, also for a group that exists only as stored offsets (no Group
        object: after a restart, or after expiry dropped it): a temporary Group is created to
        hold the lock, so a commit or join to the group (which locks the same object) lands
        either before the caller looked or after it acted, never in between. Yields
        ``(group, known)``, ``known`` False for such a temporary group; a temporary group still
        pristine at the end (no member joined meanwhile: it cannot, the lock is held) is
        dropped again."""
        known = group_id in self
        with self.locked(group_id, create=True) as group:
            assert group is not None
            try:
                yield group, known
            finally:
                if not known and not group.members and group.group_epoch == 0:
                    self.drop(group)
