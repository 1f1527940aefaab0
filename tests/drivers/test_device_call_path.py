"""The guarded call path of drivers.base: timeouts, retries, reconnects, cancellation.

A minimal backend (no port) makes each attempt do exactly what a test asks: answer at
once, after a delay, never, with a garbled frame or with a lost port. The attempt timer is
one re-armable handle per device (``medtwin.drivers.base._AttemptTimer``), so these tests pin the
cases where a shared timer could go wrong: a shorter deadline after longer ones, many
attempts in a row outliving the first deadline, cancellation by someone else, attempts
that overlap, and a device used from a second event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from medtwin.drivers.base import Device, DeviceIdentity, DeviceStatus, RetryPolicy
from medtwin.drivers.errors import DeviceTimeout, PortError, ProtocolError


class FakeDevice(Device):
    """A device whose attempts are whatever the test passes to :meth:`run`."""

    protocol = "fake"

    def __init__(self, *, retry: RetryPolicy) -> None:
        super().__init__("fake://0", name="dut", retry=retry)
        self.opened = 0
        self.closed = 0
        self.resyncs = 0
        self.fail_open = False

    async def _open(self) -> None:
        if self.fail_open:
            raise PortError("cannot open fake://0", device=self.name)
        self.opened += 1

    async def _close(self) -> None:
        self.closed += 1

    async def _identify(self) -> DeviceIdentity:
        return DeviceIdentity(protocol=self.protocol, model="fake")

    async def _resync(self) -> None:
        self.resyncs += 1

    async def run(self, op: Callable[[], Awaitable[str]]) -> str:
        return await self._call("run", op)


async def _answer() -> str:
    return "ok"


async def _never() -> str:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _policy(timeout_s: float, *, retries: int = 0, reconnects: int = 0) -> RetryPolicy:
    return RetryPolicy(timeout_s=timeout_s, retries=retries, reconnects=reconnects, backoff_s=0)


async def test_a_missing_reply_times_out_after_every_attempt() -> None:
    device = FakeDevice(retry=_policy(0.05, retries=2))
    await device.open()
    attempts = 0

    async def silent() -> str:
        nonlocal attempts
        attempts += 1
        return await _never()

    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(10):
        with pytest.raises(DeviceTimeout, match=r"run\(\): no reply within 0\.05 s after 3 att"):
            await device.run(silent)
    # Each attempt ran to its own deadline, none was cut short.
    assert loop.time() - started >= 3 * 0.05 * 0.99
    assert attempts == 3
    assert device.resyncs == 2
    assert device.status is DeviceStatus.OPEN
    assert await device.run(_answer) == "ok"
    await device.close()


async def test_a_shorter_deadline_after_longer_ones_is_kept() -> None:
    # Quick calls under a long timeout leave the timer armed far ahead; a later attempt
    # with a short timeout must still end at its own deadline.
    device = FakeDevice(retry=_policy(60.0))
    await device.open()
    for _ in range(5):
        assert await device.run(_answer) == "ok"
    device.retry = _policy(0.05)
    async with asyncio.timeout(10):
        with pytest.raises(DeviceTimeout):
            await device.run(_never)
    await device.close()


async def test_attempts_in_a_row_outlive_the_first_deadline() -> None:
    # 30 attempts of 10 ms each under a 0.2 s timeout: together they run past the deadline
    # the timer was first armed for, and none of them may be cancelled for it.
    device = FakeDevice(retry=_policy(0.2))
    await device.open()

    async def slow_answer() -> str:
        await asyncio.sleep(0.01)  # the device's turnaround
        return "ok"

    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(30):
        for _ in range(30):
            assert await device.run(slow_answer) == "ok"
    assert loop.time() - started > 0.2
    await device.close()


async def test_garbled_replies_are_retried_then_raised() -> None:
    device = FakeDevice(retry=_policy(1.0, retries=1))
    await device.open()
    answers = iter([ProtocolError("bad frame", raw=b"\x02?"), "ok"])

    async def garbled_once() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await device.run(garbled_once) == "ok"
    assert device.resyncs == 1

    async def always_garbled() -> str:
        raise ProtocolError("bad frame", raw=b"\x02?")

    with pytest.raises(ProtocolError, match="bad frame"):
        await device.run(always_garbled)
    await device.close()


async def test_a_lost_port_is_reopened_then_marked_lost() -> None:
    device = FakeDevice(retry=_policy(1.0, reconnects=2))
    await device.open()
    answers = iter([PortError("gone", device="dut"), "ok"])

    async def lost_once() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await device.run(lost_once) == "ok"
    assert (device.opened, device.closed) == (2, 1)

    async def lost() -> str:
        raise PortError("gone", device="dut")

    with pytest.raises(PortError):
        await device.run(lost)
    assert device.status is DeviceStatus.LOST
    await device.close()


async def test_without_reconnect_a_lost_port_is_raised_at_once() -> None:
    # What a backend's _open uses for its handshake: reopening from inside _open would
    # recurse, so the PortError goes straight to the caller and the status is left alone.
    device = FakeDevice(retry=_policy(1.0, reconnects=3))
    await device.open()

    async def lost() -> str:
        raise PortError("gone", device="dut")

    with pytest.raises(PortError):
        await device._retrying("open", lost, reconnect=False)
    assert device.opened == 1
    assert device.status is DeviceStatus.OPEN
    await device.close()


async def test_cancelling_a_call_is_not_a_timeout() -> None:
    device = FakeDevice(retry=_policy(30.0))
    await device.open()
    entered = asyncio.Event()

    async def hang() -> str:
        entered.set()
        return await _never()

    call = asyncio.create_task(device.run(hang))
    async with asyncio.timeout(10):
        await entered.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    # The timer is free again: the next call is bounded by its own deadline.
    device.retry = _policy(0.05)
    async with asyncio.timeout(10):
        with pytest.raises(DeviceTimeout):
            await device.run(_never)
    await device.close()


async def test_overlapping_attempts_are_each_bounded() -> None:
    # The lock keeps calls apart; attempts made outside it (a stream read next to a
    # heartbeat, say) must still each get a deadline.
    device = FakeDevice(retry=_policy(0.05))
    await device.open()
    async with asyncio.timeout(10):
        results = await asyncio.gather(
            device._within(_never, what="first: no reply"),
            device._within(_never, what="second: no reply"),
            return_exceptions=True,
        )
    assert [type(r) for r in results] == [DeviceTimeout, DeviceTimeout]
    assert "first: no reply within 0.05 s on fake://0" in str(results[0])
    assert "second: no reply within 0.05 s on fake://0" in str(results[1])
    await device.close()


async def test_a_timeout_inside_the_operation_is_its_own() -> None:
    # A TimeoutError the operation raises itself (a Modbus "no response") is retried like
    # a missing reply, and not mistaken for the call path's own deadline.
    device = FakeDevice(retry=_policy(5.0, retries=1))
    await device.open()
    attempts = 0

    async def no_response() -> str:
        nonlocal attempts
        attempts += 1
        raise DeviceTimeout("no response from the slave", device="dut")

    with pytest.raises(DeviceTimeout, match="after 2 attempts"):
        await device.run(no_response)
    assert attempts == 2
    with pytest.raises(DeviceTimeout, match="no response from the slave"):
        await device._within(no_response)
    await device.close()


def test_a_device_moves_to_another_event_loop() -> None:
    device = FakeDevice(retry=_policy(0.05))

    async def session(*, close: bool) -> None:
        await device.open()
        assert await device.run(_answer) == "ok"
        async with asyncio.timeout(10):
            with pytest.raises(DeviceTimeout):
                await device.run(_never)
        assert await device.run(_answer) == "ok"
        if close:
            await device.close()

    # The first loop ends with the device open and its timer armed on that loop; the
    # second must arm its own and not wait on a handle of a closed loop.
    asyncio.run(session(close=False))
    asyncio.run(session(close=True))


def test_a_handle_left_on_another_loop_is_ignored_there() -> None:
    # Loop A arms the timer, loop B re-arms it, then the device is back on loop A for a
    # long attempt: A's old handle fires in the middle of it and must not end it.
    device = FakeDevice(retry=_policy(0.3))
    loop_a = asyncio.new_event_loop()

    async def slow_answer() -> str:
        await asyncio.sleep(0.6)  # spans the moment A's old handle fires
        return "ok"

    try:
        loop_a.run_until_complete(device.open())
        assert loop_a.run_until_complete(device.run(_answer)) == "ok"
        assert asyncio.run(device.run(_answer)) == "ok"
        device.retry = _policy(5.0)
        assert loop_a.run_until_complete(device.run(slow_answer)) == "ok"
        loop_a.run_until_complete(device.close())
    finally:
        loop_a.close()
