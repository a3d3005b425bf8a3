"""How many threads each copy of the language model gets on the CPU when none are set."""

from __future__ import annotations

import pytest

from llm.chat import ctranslate2_uses_mkl, default_threads


@pytest.mark.parametrize(("cores", "replicas", "threads"), [
    (2, 4, 2),   # the development machine: a reply alone writes on both cores
    (1, 4, 1),   # one core: one thread, not two fighting over it
    (16, 4, 4),  # the cores shared among the copies
    (16, 1, 16),
    (3, 2, 2),
])
def test_with_onednn_each_copy_gets_the_cores_shared_and_at_least_two_where_there_are(
        cores: int, replicas: int, threads: int) -> None:
    assert default_threads(cores, replicas) == threads
    assert default_threads(cores, replicas, mkl=False) == threads


@pytest.mark.parametrize(("cores", "replicas", "threads"), [
    (2, 4, 1),   # the development machine's Intel Xeon: one thread a copy
    (1, 4, 1),
    (16, 4, 4),
    (16, 1, 16),
    (3, 2, 1),
])
def test_with_mkl_each_copy_gets_the_cores_shared_without_a_floor_of_two(
        cores: int, replicas: int, threads: int) -> None:
    assert default_threads(cores, replicas, mkl=True) == threads


INTEL = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n"
AMD = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"


def test_ctranslate2_uses_mkl_on_an_intel_processor_and_onednn_on_others() -> None:
    assert ctranslate2_uses_mkl({}, INTEL, "x86_64")
    assert not ctranslate2_uses_mkl({}, AMD, "x86_64")
    assert not ctranslate2_uses_mkl({}, "", "x86_64")  # no vendor line: not assumed
    assert not ctranslate2_uses_mkl({}, INTEL, "aarch64")  # no MKL off x86-64


@pytest.mark.parametrize(("value", "mkl"), [("1", True), ("true", True), ("ON", True),
                                            ("0", False), ("false", False)])
def test_ct2_use_mkl_decides_whatever_the_processor(value: str, mkl: bool) -> None:
    assert ctranslate2_uses_mkl({"CT2_USE_MKL": value}, INTEL) is mkl
    assert ctranslate2_uses_mkl({"CT2_USE_MKL": value}, AMD) is mkl

