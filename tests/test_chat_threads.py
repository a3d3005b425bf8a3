"""How many threads each copy of the language model gets on the CPU when none are set."""

from __future__ import annotations

import pytest

from llm.chat import default_threads


@pytest.mark.parametrize(("cores", "replicas", "threads"), [
    (2, 4, 2),   # the development machine: a reply alone writes on both cores
    (1, 4, 1),   # one core: one thread, not two fighting over it
    (16, 4, 4),  # the cores shared among the copies
    (16, 1, 16),
    (3, 2, 2),
])
def test_each_copy_gets_the_cores_shared_and_at_least_two_where_there_are(
        cores: int, replicas: int, threads: int) -> None:
    assert default_threads(cores, replicas) == threads
