"""Every file name storage derives from a topic name fits the file system, for every allowed
partition number; the validator's limit is exactly the one that fits."""

from __future__ import annotations

import errno
import os

import pytest

from logstream.errors import InvalidTopicError
from logstream.storage import LogManager, files
from logstream.storage.config import MAX_PARTITIONS, MAX_TOPIC_NAME_LENGTH, validate_topic_name


def _derived_names(topic: str) -> list[str]:
    last = MAX_PARTITIONS - 1
    return [
        files.partition_dir_name(topic, last),
        files.partition_dir_name(topic, last) + files.DELETED_SUFFIX,
        f"{topic}.json",
        f"{topic}.json{files.TMP_SUFFIX}",
    ]


def test_the_longest_name_fits_with_the_largest_partition_number(tmp_path):
    topic = validate_topic_name("t" * MAX_TOPIC_NAME_LENGTH)
    for name in _derived_names(topic):
        os.mkdir(tmp_path / name)  # the real file system accepts it


def test_one_more_character_would_not_fit(tmp_path):
    with pytest.raises(InvalidTopicError):
        validate_topic_name("t" * (MAX_TOPIC_NAME_LENGTH + 1))
    longest = max(_derived_names("t" * (MAX_TOPIC_NAME_LENGTH + 1)), key=len)
    with pytest.raises(OSError) as info:
        os.mkdir(tmp_path / longest)
    assert info.value.errno == errno.ENAMETOOLONG


def test_a_longest_name_topic_lives_through_create_write_delete(tmp_path):
    from logstream.codec import encode_batch

    topic = "d" * MAX_TOPIC_NAME_LENGTH
    with LogManager.open(tmp_path) as m:
        m.create_topic(topic, 3)
        m.get_log(topic, 2).append(encode_batch([b"x"]))
    with LogManager.open(tmp_path) as m:
        assert m.get_log(topic, 2).log_end_offset == 1
        m.delete_topic(topic)
        assert [p for p in tmp_path.iterdir() if p.name.startswith("d")] == []
