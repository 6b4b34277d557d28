"""Helpers for the queue-group tests (a module of its own name: ``conftest`` is ambiguous
when several test packages run together)."""

from __future__ import annotations

from pathlib import Path

from logstream import Admin, GroupAdmin, Producer


def make_topic(address: str, topic: str, partitions: int, count: int, *, keys: int = 0) -> None:
    """Create ``topic`` and write ``count`` records ``b"task-<i>"`` (keys ``k<i % keys>``)."""
    with Admin(address) as admin:
        admin.create_topic(topic, partitions=partitions)
    if not count:
        return
    with Producer(address) as p:
        for i in range(count):
            key = f"k{i % keys}".encode() if keys else None
            p.send(topic, value=f"task-{i}".encode(), key=key, partition=i % partitions)
        p.flush()


def admin(address: str) -> GroupAdmin:
    return GroupAdmin(address)


WORKER = Path(__file__).with_name("worker.py")
