"""The test bed's emulated slow device: one device, its holds queue."""

from __future__ import annotations

import asyncio
import time

from services.node_agent.emulation import Emulator


async def test_holds_of_concurrent_steps_queue_on_the_one_device() -> None:
    emu = Emulator(serial=True)
    start = time.monotonic()
    await asyncio.gather(*(emu.hold(0.05) for _ in range(4)))
    # Four steps of 50 ms extra each on one device: about 200 ms, not 50 ms.
    assert time.monotonic() - start >= 0.19
    assert emu.emulated_busy_s == 0.2
    before = time.monotonic()
    await emu.hold(0.01)  # the device is idle again: this hold starts now, not later
    assert emu._device_free_at <= before + 0.01 + (time.monotonic() - before)


async def test_without_serial_the_holds_of_concurrent_steps_overlap() -> None:
    emu = Emulator()
    await asyncio.gather(*(emu.hold(0.05) for _ in range(4)))
    assert emu._device_free_at == 0.0 and emu.emulated_busy_s == 0.2
