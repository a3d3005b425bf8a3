"""Freed native memory is given back to the system while the engines are idle
(voice/memory.py)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from voice.config import ConfigError, ServiceConfig
from voice.config_file import build_config, load_toml
from voice.memory import HeapTrimmer, set_mmap_threshold

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


_RETAINED_AFTER_FREE = """
import ctypes, ctypes.util, sys
import psutil
from voice.memory import set_mmap_threshold
if sys.argv[1] != "0":
    assert set_mmap_threshold(int(sys.argv[1]))
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 8 * 2**20
first = libc.malloc(size)  # an engine's big buffer: mmapped, and glibc raises its threshold
libc.free(first)
rss = psutil.Process().memory_info().rss
blocks = []
for _ in range(20):  # the same size again, each followed by something that stays
    blocks.append(libc.malloc(size))
    ctypes.memset(blocks[-1], 1, size)
    libc.malloc(256 * 1024)  # from the top of the heap, after the block
for block in blocks:
    libc.free(block)
print(psutil.Process().memory_info().rss - rss)
"""


def _retained_after_free(threshold: int) -> int:
    done = subprocess.run([sys.executable, "-c", _RETAINED_AFTER_FREE, str(threshold)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def test_a_fixed_mmap_threshold_gives_big_freed_buffers_back_at_once() -> None:
    if not sys.platform.startswith("linux") or not HeapTrimmer(lambda: True, 30).available:
        pytest.skip("glibc only")
    # glibc's default: after the first 8 MiB buffer is freed, the next ones come from the heap
    # and stay there when freed (160 MiB here); with the threshold fixed they go back.
    assert _retained_after_free(0) > 100 * MiB
    assert _retained_after_free(1024 * 1024) < 20 * MiB


def test_the_mmap_threshold_is_a_setting_and_0_keeps_glibcs_default(tmp_path: Path) -> None:
    config = tmp_path / "voice.toml"
    config.write_text("memory_mmap_threshold_kib = 0\n")
    assert build_config(load_toml(config), {}).memory_mmap_threshold_kib == 0
    default = ServiceConfig().memory_mmap_threshold_kib
    assert default > 0 and build_config({}, {}).memory_mmap_threshold_kib == default
    for bad in (-1, 2**21, "1M"):
        with pytest.raises(ConfigError, match="memory_mmap_threshold_kib"):
            build_config({"memory_mmap_threshold_kib": bad}, {}).check()
    assert not set_mmap_threshold(0)
