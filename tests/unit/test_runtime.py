"""The serve process's interpreter settings (receiver.runtime)."""

from __future__ import annotations

import gc

from receiver.runtime import GEN0_THRESHOLD, tune_garbage_collector


def test_the_youngest_generation_is_collected_less_often_and_the_others_keep_theirs() -> None:
    before = gc.get_threshold()
    try:
        replaced = tune_garbage_collector(12_345)
        assert replaced == before
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert tune_garbage_collector() == (12_345, before[1], before[2])
        assert gc.get_threshold()[0] == GEN0_THRESHOLD
    finally:
        gc.set_threshold(*before)


def test_cyclic_garbage_is_still_collected_under_the_raised_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector(50)
        gc.collect()

        class Node:
            def __init__(self) -> None:
                self.me = self

        collected_before = sum(s["collected"] for s in gc.get_stats())
        for _ in range(500):
            Node()  # a reference cycle: only the collector frees it
        assert sum(s["collected"] for s in gc.get_stats()) > collected_before
    finally:
        gc.set_threshold(*before)
