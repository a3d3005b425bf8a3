"""Freed native memory is given back to the system while the engines are idle
(voice/memory.py)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from pathlib import Path

import psutil
import pytest

from voice.config import ConfigError, build_config, load_toml
from voice.memory import HeapTrimmer

MiB = 2**20


def test_trimming_gives_freed_heap_memory_back_to_the_system() -> None:
    trimmer = HeapTrimmer(lambda: True, 30)
    if not trimmer.available:
        pytest.skip("no glibc malloc_trim here")
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # 160 MiB in blocks below glibc's mmap threshold (so from the heap), touched so that they
    # are resident, then freed while a block allocated after them stays in use: what the
    # engines' buffers leave behind, which free() itself does not give back.
    size = 96 * 1024
    blocks = [libc.malloc(size) for _ in range(160 * MiB // size)]
    pin = libc.malloc(size)  # from the top of the heap, after the blocks
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in blocks:
        libc.free(block)
    process = psutil.Process()
    retained = process.memory_info().rss
    released = trimmer.trim()
    assert released > 100 * MiB
    assert process.memory_info().rss < retained - 100 * MiB
    libc.free(pin)


def test_the_trimmer_trims_only_while_the_engines_are_idle() -> None:
    busy = [True, True, False, True, False]
    idle_answers: list[bool] = []
    trims: list[int] = []

    def idle() -> bool:
        answer = busy.pop(0) is False if busy else False
        idle_answers.append(answer)
        return answer

    trimmer = HeapTrimmer(idle, 0.001, trims.append)
    if not trimmer.available:
        pytest.skip("no glibc malloc_trim here")

    async def scenario() -> None:
        task = asyncio.ensure_future(trimmer.run())
        while len(idle_answers) < 6:
            await asyncio.sleep(0.005)
        task.cancel()

    asyncio.run(scenario())
    assert len(trims) == idle_answers.count(True) == 2


def test_the_trim_interval_is_a_setting_and_0_turns_it_off(tmp_path: Path) -> None:
    config = tmp_path / "voice.toml"
    config.write_text("memory_trim_interval_s = 0\n")
    assert build_config(load_toml(config), {}).memory_trim_interval_s == 0
    with pytest.raises(ConfigError, match="memory_trim_interval_s"):
        build_config({"memory_trim_interval_s": -1}, {}).check()
    off = HeapTrimmer(lambda: True, 0, lambda released: pytest.fail("trimmed"))
    asyncio.run(asyncio.wait_for(off.run(), 1))  # returns at once
