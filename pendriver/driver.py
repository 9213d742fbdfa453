"""The asynchronous pen driver.

``async with connect(url) as pen`` opens the link, greets the pen (HELLO → DEVICE_INFO) and
keeps its watchdog fed with heartbeats. Every request waits for its ACK/NACK, matched by
sequence number; a silent pen gets the same request again under the same sequence number,
which the pen executes at most once, so a retry can never double an actuation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from firmware_protocol import (
    PROTOCOL_VERSION,
    SCHEMA_HASH,
    DecodeError,
    Endpoint,
    LinkStats,
    MessageReceived,
    RequestTracker,
)
from firmware_protocol import messages as m
from firmware_protocol.cobs import cobs_encode
from firmware_protocol.codec import CODECS
from firmware_protocol.crc import crc16
from firmware_protocol.framing import HEADER
from firmware_protocol.messages import ErrorCode

from . import limits
from .config import DriverConfig
from .errors import LinkLost, PenConnectionError, PenError, PenRefused, PenTimeout, ProtocolMismatch
from .models import CartridgeInfo, DeviceInfo, FaultEvent, Status, TelemetrySample
from .transports import Transport, open_transport

log = logging.getLogger("pendriver")

R = TypeVar("R", bound=m.Message)

_END = object()


class TelemetryStream:
    """Telemetry samples as they arrive, through a bounded queue.

    Iterate with ``async for``; close (or leave ``async with``) to unsubscribe. When the
    consumer falls behind, the oldest sample is dropped and :attr:`dropped` counts it.
    """

    def __init__(self, pen: Pen, maxsize: int) -> None:
        self._pen = pen
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.closed = False

    def _push(self, item: object) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    def __aiter__(self) -> TelemetryStream:
        return self

    async def __anext__(self) -> TelemetrySample:
        if self.closed and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self.closed = True
            error = self._pen._link_error
            if error is not None:
                raise error
            raise StopAsyncIteration
        assert isinstance(item, TelemetrySample)
        return item

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._pen._streams.discard(self)

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> TelemetryStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Pen:
    """One connected pen. Create with :func:`connect`; use as an async context manager."""

    def __init__(self, transport: Transport, config: DriverConfig | None = None) -> None:
        self.transport = transport
        self.config = config or DriverConfig()
        self._endpoint = Endpoint(first_seq=random.randrange(0x10000))
        self._tracker = RequestTracker()
        self._waiters: dict[int, asyncio.Future[m.Message]] = {}
        self._raw_waiters: dict[int, asyncio.Future[m.Message]] = {}
        self._streams: set[TelemetryStream] = set()
        self._fault_listeners: set[asyncio.Queue[FaultEvent]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._info: DeviceInfo | None = None
        self._link_error: PenError | None = None
        self._started_motor = False
        self._last_rx: float | None = None
        self.faults: list[FaultEvent] = []
        """Every FAULT event the pen sent during this connection, in order."""
        self.cartridge_events: list[CartridgeInfo] = []
        self.stray_responses = 0

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> Pen:
        await self.transport.open()
        self._tasks.append(asyncio.create_task(self._read_loop(), name="pen-reader"))
        try:
            reply = await self._request(
                m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, self.config.host_name[:16]),
                m.DeviceInfo,
                timeout=self.config.hello_timeout_s,
            )
        except PenTimeout:
            await self._shutdown()
            raise PenTimeout(
                f"no answer from a pen at {self.transport.url}: check that it is switched on "
                "and that this is its port"
            ) from None
        except BaseException:
            await self._shutdown()
            raise
        if reply.protocol_version != PROTOCOL_VERSION:
            await self._shutdown()
            raise ProtocolMismatch(
                f"the pen speaks protocol v{reply.protocol_version}, "
                f"this driver v{PROTOCOL_VERSION}"
            )
        if reply.schema_hash != SCHEMA_HASH:
            log.warning(
                "pen schema 0x%08X differs from ours 0x%08X; messages whose layout differs will "
                "be refused",
                reply.schema_hash,
                SCHEMA_HASH,
            )
        self._info = DeviceInfo.from_message(reply)
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="pen-heartbeat"))
        return self

    async def close(self) -> None:
        """Close the link; stops the motor first if this session started it."""
        if self._started_motor and self.config.stop_on_close and self._link_error is None:
            with contextlib.suppress(PenError):
                await self.stop()
        await self._shutdown()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.transport.close()
        if self._link_error is None:
            self._link_error = LinkLost("connection closed")
            self._end_streams()

    async def __aenter__(self) -> Pen:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ queries
    @property
    def device_info(self) -> DeviceInfo:
        if self._info is None:
            raise PenError("not connected: use `async with connect(url) as pen`")
        return self._info

    async def info(self, *, refresh: bool = False) -> DeviceInfo:
        """What the pen is; asked again only with ``refresh``."""
        if refresh or self._info is None:
            reply = await self._request(
                m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, self.config.host_name[:16]), m.DeviceInfo
            )
            self._info = DeviceInfo.from_message(reply)
        return self._info

    async def status(self) -> Status:
        return Status.from_message(await self._request(m.GetStatus(), m.Status))

    async def cartridge(self) -> CartridgeInfo:
        return CartridgeInfo.from_message(await self._request(m.GetCartridge(), m.Cartridge))

    @property
    def link_stats(self) -> LinkStats:
        """Counters of received frames, including the ones dropped and why."""
        return self._endpoint.stats

    @property
    def last_frame_age_s(self) -> float | None:
        """Seconds since the last valid frame from the pen (``None`` before the first)."""
        if self._last_rx is None:
            return None
        return asyncio.get_running_loop().time() - self._last_rx

    # ------------------------------------------------------------------ commands
    async def set_depth(self, depth_mm: float) -> None:
        """Set the needle depth; raises :class:`LimitError` before sending if out of range."""
        depth = limits.depth_um(self.device_info, depth_mm)
        await self._request(m.SetDepth(depth), m.Ack)

    async def set_stroke_rate(self, rate_hz: float) -> None:
        rate = limits.rate_mhz(self.device_info, rate_hz)
        await self._request(m.SetStrokeRate(rate), m.Ack)

    async def set_telemetry_rate(self, rate_hz: int) -> None:
        await self._request(m.SetTelemetry(limits.telemetry_hz(rate_hz)), m.Ack)

    async def start(self) -> None:
        """Start the motor at the current set points."""
        await self._request(m.Start(), m.Ack)
        self._started_motor = True

    async def stop(self) -> None:
        await self._request(m.Stop(), m.Ack)
        self._started_motor = False

    async def clear_faults(self) -> None:
        await self._request(m.ClearFaults(), m.Ack)

    # ------------------------------------------------------------------ raw access
    async def request(self, message: m.Message, expect: type[R]) -> R:
        """Send any request without the driver's range checks and wait for its answer.

        For bench engineers and conformance tests that must see what the *pen* does with a
        value the driver would have refused. A NACK raises :class:`PenRefused`; no answer
        after the retries raises :class:`PenTimeout`.
        """
        return await self._request(message, expect)

    async def request_raw(
        self,
        msg_id: int,
        payload: bytes = b"",
        *,
        layout_hash: int | None = None,
        seq: int | None = None,
        timeout: float | None = None,
    ) -> m.Message:
        """Send a hand-made frame (any id, any payload, any layout hash); return the answer.

        Sent once, without retries: the point is to see how the pen treats exactly these
        bytes (an unknown id, a wrong schema hash, a malformed payload, a repeated sequence
        number). The answer is returned as it came, a NACK included.
        """
        if self._link_error is not None:
            raise self._link_error
        loop = asyncio.get_running_loop()
        if seq is None:
            seq = self._endpoint.allocate_seq()
        if layout_hash is None:
            codec = CODECS.get(msg_id)
            layout_hash = codec.definition.schema_hash if codec else 0
        body = HEADER.pack(PROTOCOL_VERSION, 0, seq, msg_id, layout_hash) + payload
        frame = cobs_encode(body + crc16(body).to_bytes(2, "big")) + b"\x00"
        future: asyncio.Future[m.Message] = loop.create_future()
        self._raw_waiters[seq] = future
        try:
            await self._write(frame)
            wait = timeout if timeout is not None else self.config.request_timeout_s
            try:
                return await asyncio.wait_for(future, wait)
            except TimeoutError:
                raise PenTimeout(f"no answer to the raw frame with id 0x{msg_id:02X}") from None
        finally:
            self._raw_waiters.pop(seq, None)

    # ------------------------------------------------------------------ streams
    def telemetry(self) -> TelemetryStream:
        """Subscribe to telemetry from now on."""
        if self._link_error is not None:
            raise self._link_error
        stream = TelemetryStream(self, self.config.telemetry_queue)
        self._streams.add(stream)
        return stream

    async def fault_events(self) -> AsyncGenerator[FaultEvent, None]:
        """FAULT events from now on."""
        queue: asyncio.Queue[FaultEvent] = asyncio.Queue()
        self._fault_listeners.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._fault_listeners.discard(queue)

    # ------------------------------------------------------------------ internals
    async def _request(
        self, message: m.Message, expect: type[R], *, timeout: float | None = None
    ) -> R:
        if self._link_error is not None:
            raise self._link_error
        loop = asyncio.get_running_loop()
        wait = timeout if timeout is not None else self.config.request_timeout_s
        sent = self._endpoint.send(message)
        future: asyncio.Future[m.Message] = loop.create_future()
        self._waiters[sent.seq] = future
        self._tracker.add(sent.seq, message, loop.time(), wait)
        try:
            await self._write(sent.data)
            attempts = self.config.retries + 1
            for attempt in range(1, attempts + 1):
                try:
                    reply = await asyncio.wait_for(asyncio.shield(future), wait)
                    break
                except TimeoutError:
                    if attempt == attempts:
                        raise PenTimeout(
                            f"the pen did not answer {message.NAME} ({attempts} attempts, "
                            f"{attempts * wait:g} s); check the link"
                        ) from None
                    log.debug("no answer to %s seq %d, resending", message.NAME, sent.seq)
                    self._tracker.retried(sent.seq, loop.time(), wait)
                    await self._write(self._endpoint.resend(message, sent.seq))
        finally:
            self._waiters.pop(sent.seq, None)
            self._tracker.cancel(sent.seq)
            if future.done() and not future.cancelled():
                future.exception()  # seen here (raised above or moot): no "never retrieved"
        if isinstance(reply, m.Nack):
            raise self._refusal(message, reply)
        if not isinstance(reply, expect):  # pragma: no cover - the tracker checks the type
            raise PenError(f"unexpected answer {reply.NAME} to {message.NAME}")
        return reply

    def _refusal(self, request: m.Message, nack: m.Nack) -> PenRefused:
        try:
            code = ErrorCode(nack.code)
            name = code.name
        except ValueError:
            name = f"error {nack.code}"
        detail = nack.detail
        if nack.code in (ErrorCode.OUT_OF_RANGE, ErrorCode.NOT_ON_STEP):
            if isinstance(request, m.SetDepth):
                why = (
                    f"limit {detail / 1000:g} mm"
                    if nack.code == ErrorCode.OUT_OF_RANGE
                    else f"step {detail / 1000:g} mm"
                )
            elif isinstance(request, m.SetStrokeRate):
                why = (
                    f"limit {detail / 1000:g} Hz"
                    if nack.code == ErrorCode.OUT_OF_RANGE
                    else f"step {detail / 1000:g} Hz"
                )
            else:
                why = f"limit {detail}"
        elif nack.code == ErrorCode.FAULT_ACTIVE:
            why = f"faults {m.FaultFlags(detail)!s}; clear them with clear_faults()"
        elif nack.code == ErrorCode.INVALID_STATE:
            why = f"pen is {m.PenState(detail).name if detail in set(m.PenState) else detail}"
        else:
            why = ""
        text = f"the pen refused {request.NAME}: {name}" + (f" ({why})" if why else "")
        return PenRefused(request.NAME, nack.code, name, detail, text)

    async def _write(self, data: bytes) -> None:
        try:
            await self.transport.write(data)
        except LinkLost as exc:
            self._fail(exc)
            raise

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self.transport.read()
                for event in self._endpoint.receive_data(data):
                    if isinstance(event, MessageReceived):
                        self._last_rx = loop.time()
                        self._dispatch(event)
                    elif isinstance(event, DecodeError):
                        log.debug("dropped a frame: %s", event.describe())
        except LinkLost as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(LinkLost(f"link to {self.transport.url} failed: {exc}"))

    def _dispatch(self, event: MessageReceived) -> None:
        message = event.message
        if event.is_response:
            pending = self._tracker.match(event)
            future = self._waiters.get(event.seq) if pending else None
            if future is None:
                future = self._raw_waiters.get(event.seq)
            if future is not None and not future.done():
                future.set_result(message)
            else:
                self.stray_responses += 1  # a late answer to a request already retried
            return
        if isinstance(message, m.Telemetry):
            if self._streams:
                sample = TelemetrySample.from_message(message)
                for stream in list(self._streams):
                    stream._push(sample)
        elif isinstance(message, m.Fault):
            fault = FaultEvent.from_message(message)
            self.faults.append(fault)
            for queue in self._fault_listeners:
                queue.put_nowait(fault)
        elif isinstance(message, m.Cartridge):
            self.cartridge_events.append(CartridgeInfo.from_message(message))

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with contextlib.suppress(LinkLost):
            while True:
                await asyncio.sleep(self.config.heartbeat_interval_s)
                uptime = int((loop.time() - start) * 1e6)
                await self._write(self._endpoint.send(m.Heartbeat(uptime, m.PenState.IDLE)).data)

    def _fail(self, error: PenError) -> None:
        if self._link_error is not None:
            return
        self._link_error = error
        for future in (*self._waiters.values(), *self._raw_waiters.values()):
            if not future.done():
                future.set_exception(error)
        self._end_streams()

    def _end_streams(self) -> None:
        for stream in list(self._streams):
            stream._push(_END)
        self._streams.clear()


def connect(
    url: str, *, config: DriverConfig | None = None, capture: str | Path | None = None
) -> Pen:
    """A pen at ``url``, to open with ``async with`` (or ``await pen.open()``).

    URLs: ``sim://[profile]`` (the built-in simulator), a serial device such as
    ``/dev/ttyUSB0``, ``socket://host:port`` (a pen served over TCP) or
    ``ble://NAME_OR_ADDRESS`` (a pen on Bluetooth LE). With ``capture``,
    every byte both ways is appended to that file (read it back with ``pen decode``).
    """
    try:
        transport = open_transport(url)
    except ValueError as exc:
        raise PenConnectionError(f"cannot use {url!r}: {exc}") from None
    if capture is not None:
        from .capture import CaptureTransport

        transport = CaptureTransport(transport, capture)
    return Pen(transport, config)
