"""The asynchronous pen driver.

``async with connect(url) as pen`` opens the link, greets the pen (HELLO → DEVICE_INFO) and
keeps its watchdog fed with heartbeats. Every request waits for its ACK/NACK, matched by
sequence number; a silent pen gets the same request again under the same sequence number,
which the pen executes at most once, so a retry can never double an actuation.

Any valid frame from the pen is proof of life. When none has come for
``DriverConfig.link_timeout_s`` (or the transport reports the link closed), the driver reports
a :class:`~pendriver.events.LinkDown` event; with ``reconnect=True`` it then reconnects by
itself and reports :class:`~pendriver.events.LinkUp` with the pen's state as found. It never
sends START or CLEAR_FAULTS on its own: a pen that stopped on its watchdog while the link was
down stays in FAULT with WATCHDOG latched until the user clears it (:meth:`Pen.clear_faults`)
and starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import statistics
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
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
from firmware_protocol.codec import CODECS
from firmware_protocol.framing import encode_raw_frame
from firmware_protocol.messages import ErrorCode, FaultFlags, PenState

from . import limits
from .config import DriverConfig
from .errors import (
    LinkLost,
    PenConnectionError,
    PenError,
    PenRefused,
    PenTimeout,
    ProtocolMismatch,
    Reconnecting,
    WrongPen,
)
from .events import (
    CartridgeChanged,
    Fanout,
    LinkDown,
    LinkUp,
    PenEvent,
    QueueOverflow,
    StateChanged,
    Subscription,
)
from .models import (
    CartridgeInfo,
    DeviceInfo,
    DriverCounters,
    FaultEvent,
    LinkQuality,
    LinkState,
    Status,
    TelemetrySample,
)
from .naming import fault_names
from .transports import Transport, open_transport

log = logging.getLogger("pendriver")

R = TypeVar("R", bound=m.Message)

TelemetryStream = Subscription[TelemetrySample]
"""What :meth:`Pen.telemetry` returns (kept as a name for readers of older code)."""

RTT_WINDOW = 1024
"""Round trips kept for the percentiles of :attr:`Pen.link_quality`."""


class Pen:
    """One connected pen. Create with :func:`connect`; use as an async context manager."""

    def __init__(self, transport: Transport, config: DriverConfig | None = None) -> None:
        self.transport = transport
        self.config = config or DriverConfig()
        first_seq = self.config.first_seq
        self._endpoint = Endpoint(
            first_seq=random.randrange(0x10000) if first_seq is None else first_seq
        )
        self._tracker = RequestTracker()
        self._waiters: dict[int, asyncio.Future[m.Message]] = {}
        self._raw_waiters: dict[int, asyncio.Future[m.Message]] = {}
        self._events: Fanout[PenEvent] = Fanout("events", self.config.event_queue, _no_report)
        self._telemetry: Fanout[TelemetrySample] = Fanout(
            "telemetry", self.config.telemetry_queue, self._events.publish
        )
        self._reader: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._info: DeviceInfo | None = None
        self._link_error: PenError | None = None
        self._link_state: LinkState = LinkState.CLOSED
        self._down_since: float | None = None
        self._started_motor = False
        self._orphan_running = False
        """The pen last reported RUNNING at a moment this session had not started its motor
        (judged when the report arrived: see :meth:`_observe_state`)."""
        self._orphan_reported = False
        self._before_greeting = bytearray()
        """What arrived before the pen's first answer (a server may say in text why not)."""
        self._last_rx: float | None = None
        self._held = 0
        self._liveness_wake = asyncio.Event()
        """Set to make the liveness check look again now (its timeout just got shorter)."""
        self._state: PenState | None = None
        self._active_faults = FaultFlags(0)
        self._rtts: deque[float] = deque(maxlen=RTT_WINDOW)
        self.counters = DriverCounters()
        self.faults: list[FaultEvent] = []
        """Every FAULT event the pen sent during this connection, in order."""
        self.cartridge_events: list[CartridgeInfo] = []

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> Pen:
        await self.transport.open()
        self._link_state = LinkState.UP
        self._last_rx = asyncio.get_running_loop().time()
        self._start_reader()
        try:
            await self._handshake()
        except PenError as exc:
            await self._shutdown()
            said = _text_said(bytes(self._before_greeting))
            if said:
                raise PenConnectionError(
                    f"cannot connect to {self.transport.url}: it said {said!r}"
                ) from None
            if isinstance(exc, PenTimeout):
                raise PenTimeout(
                    f"no answer from a pen at {self.transport.url}: check that it is switched "
                    "on and that this is its port"
                ) from None
            raise
        except BaseException:
            await self._shutdown()
            raise
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="pen-heartbeat"))
        self._tasks.append(asyncio.create_task(self._liveness_loop(), name="pen-liveness"))
        return self

    async def _handshake(self) -> None:
        reply = await self._request(
            m.Hello(PROTOCOL_VERSION, SCHEMA_HASH, self.config.host_name[:16]),
            m.DeviceInfo,
            during_reconnect=True,
        )
        if reply.protocol_version != PROTOCOL_VERSION:
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

    async def _handshake_same_pen(self) -> None:
        """The greeting after a reopen, which must find the pen this connection was opened to.

        A port name can come to mean another device (a pseudo-terminal number reused by a
        restarted server or someone's terminal, a USB adapter replugged with another pen on
        it): nothing but HELLO goes out before the answer is checked, and a different serial
        number or model ends the connection with :class:`WrongPen`.
        """
        before = self._info
        await self._handshake()
        after = self._info
        if before is None or after is None:  # pragma: no cover - open() greeted first
            return
        if (after.serial_number, after.model) != (before.serial_number, before.model):
            self._info = before
            raise WrongPen(
                f"{self.transport.url} now answers as {after.model} {after.serial_number}, "
                f"not the pen this connection was opened to ({before.model} "
                f"{before.serial_number}): refused; connect again to use it"
            )

    async def _stop_reader(self) -> None:
        """Cancel the reader task (unless it is the caller) and wait for it to end."""
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _drop_transport(self) -> None:
        await self._stop_reader()
        with contextlib.suppress(Exception):
            await self.transport.close()

    async def close(self) -> None:
        """Close the link; stops the motor first if this session may have started it (a START
        that timed out included: see :attr:`motor_may_run`)."""
        if self._started_motor and self.config.stop_on_close and self._link_state is LinkState.UP:
            with contextlib.suppress(PenError):
                await self.stop()
        await self._shutdown()

    async def _shutdown(self) -> None:
        tasks = [*self._tasks, *([self._reader] if self._reader else [])]
        current = asyncio.current_task()
        for task in tasks:
            if task is not current:
                task.cancel()
        for task in tasks:
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tasks.clear()
        self._reader = None
        await self.transport.close()
        if self._link_error is None:
            self._fail(LinkLost("connection closed"), ended=True)

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
        reply = await self._request(m.GetStatus(), m.Status)
        self._observe_state(reply.state)
        return Status.from_message(reply)

    async def cartridge(self) -> CartridgeInfo:
        return CartridgeInfo.from_message(await self._request(m.GetCartridge(), m.Cartridge))

    @property
    def link_stats(self) -> LinkStats:
        """Counters of received frames, including the ones dropped and why."""
        return self._endpoint.stats

    @property
    def link_state(self) -> LinkState:
        """``UP``, ``DOWN`` (lost, reconnecting) or ``CLOSED``; equal to "up", "down", "closed"."""
        return self._link_state

    @property
    def last_frame_age_s(self) -> float | None:
        """Seconds since the last valid frame from the pen (``None`` before the first)."""
        if self._last_rx is None:
            return None
        return asyncio.get_running_loop().time() - self._last_rx

    @property
    def link_quality(self) -> LinkQuality:
        stats = self._endpoint.stats
        rtts = sorted(self._rtts)

        def pct(q: float) -> float | None:
            return rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1000 if rtts else None

        return LinkQuality(
            state=self._link_state,
            last_frame_age_s=self.last_frame_age_s,
            frames_ok=stats.frames_ok,
            frames_dropped=stats.frames_dropped,
            frames_lost=stats.seq_gaps,
            rtt_ms_last=self._rtts[-1] * 1000 if self._rtts else None,
            rtt_ms_p50=statistics.median(rtts) * 1000 if rtts else None,
            rtt_ms_p99=pct(0.99),
            retries=self.counters.retries,
            reconnects=self.counters.reconnects,
        )

    @property
    def round_trips_s(self) -> tuple[float, ...]:
        """The latest request round trips (seconds, first send to answer, retries included)."""
        return tuple(self._rtts)

    # ------------------------------------------------------------------ commands
    async def set_depth(self, depth_mm: float) -> None:
        """Set the needle depth; raises :class:`LimitError` before sending if out of range."""
        depth = limits.depth_um(self.device_info, depth_mm)
        await self._request(m.SetDepth(depth), m.Ack)

    async def set_stroke_rate(self, rate_hz: float) -> None:
        rate = limits.rate_mhz(self.device_info, rate_hz)
        await self._request(m.SetStrokeRate(rate), m.Ack)

    async def set_telemetry_rate(self, rate_hz: int) -> None:
        await self._request(m.SetTelemetry(limits.telemetry_hz(rate_hz, self._info)), m.Ack)

    @property
    def motor_may_run(self) -> bool:
        """True from the moment this session sends START until a STOP is acknowledged.

        A START that timed out may have been executed (its ACK, not the START, may be what
        was lost), so it counts as running: :meth:`close` then still sends STOP. A START the
        pen refused (a NACK is an answer) leaves the motor as it was.
        """
        return self._started_motor

    async def start(self) -> None:
        """Start the motor at the current set points."""
        was = self._started_motor
        self._started_motor = True  # from the first byte sent: the pen may act on it
        try:
            await self._request(m.Start(), m.Ack)
        except PenRefused:
            self._started_motor = was
            raise

    async def stop(self) -> None:
        """Stop the motor; :attr:`motor_may_run` turns false only once the pen has said so."""
        await self._request(m.Stop(), m.Ack)
        self._started_motor = False

    async def clear_faults(self) -> None:
        await self._request(m.ClearFaults(), m.Ack)

    @contextlib.asynccontextmanager
    async def calibration_mode(self) -> AsyncIterator[None]:
        """Hold the link-lost alarm back while the pen is busy and may be quiet.

        Inside, the link counts as lost only after ``calibration_link_timeout_s`` of silence
        instead of ``link_timeout_s`` (a pen moving its actuator through a sweep, or writing
        its flash, may not stream).
        """
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
            if not self._held:
                # Back to the short timeout: a silence that already outlasts it is a loss
                # now, not when the long timeout the liveness check is waiting out ends.
                self._liveness_wake.set()

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
        flags: int = 0,
        version: int = PROTOCOL_VERSION,
        length: int | None = None,
        timeout: float | None = None,
    ) -> m.Message:
        """Send a hand-made frame (any id, payload, layout hash, flags, version, or a header
        length that lies); return the answer.

        Sent once, without retries: the point is to see how the pen treats exactly these
        bytes (an unknown id, a wrong schema hash, a malformed payload, a repeated sequence
        number, a RETRY flag, a frame of another protocol version). The answer is returned as
        it came, a NACK included; silence raises :class:`PenTimeout`.
        """
        if seq is None:
            self._check_link()
            seq = self._endpoint.allocate_seq()
        if layout_hash is None:
            codec = CODECS.get(msg_id)
            layout_hash = codec.definition.schema_hash if codec else 0
        frame = encode_raw_frame(
            msg_id,
            payload,
            seq=seq,
            layout_hash=layout_hash,
            flags=flags,
            version=version,
            length=length,
        )
        return await self.request_frame(frame, seq, timeout=timeout, what=f"id 0x{msg_id:02X}")

    async def request_frame(
        self, frame: bytes, seq: int, *, timeout: float | None = None, what: str = "frame"
    ) -> m.Message:
        """Write ``frame`` (any bytes) once and return the answer that carries ``seq``.

        For conformance tools that must say what no encoder says (a frame cut short, bytes
        after the CRC); :class:`PenTimeout` when no answer comes within ``timeout`` (the
        request timeout by default), which is what a damaged frame must get.
        """
        self._check_link()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[m.Message] = loop.create_future()
        self._raw_waiters[seq] = future
        try:
            await self._write(frame)
            wait = timeout if timeout is not None else self.config.request_timeout_s
            try:
                async with asyncio.timeout(wait):
                    return await future
            except TimeoutError:
                raise PenTimeout(f"no answer to the raw {what}") from None
        finally:
            self._raw_waiters.pop(seq, None)

    # ------------------------------------------------------------------ streams and events
    def telemetry(self) -> Subscription[TelemetrySample]:
        """Subscribe to telemetry from now on (a bounded queue; see :class:`Subscription`)."""
        if self._link_error is not None:
            raise self._link_error
        return self._telemetry.subscribe()

    def events(self) -> Subscription[PenEvent]:
        """Subscribe to events from now on: faults, state changes, link down/up, cartridges,
        queue overflows."""
        if self._link_error is not None:
            raise self._link_error
        return self._events.subscribe()

    def on_telemetry(self, callback: Callable[[TelemetrySample], None]) -> Callable[[], None]:
        """Call ``callback(sample)`` for every sample; returns a function that unregisters."""
        return self._telemetry.add_callback(callback)

    def on_event(self, callback: Callable[[PenEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unregisters."""
        return self._events.add_callback(callback)

    async def fault_events(self) -> AsyncGenerator[FaultEvent, None]:
        """FAULT events from now on (the faults among :meth:`events`)."""
        async with self.events() as events:
            async for event in events:
                if isinstance(event, FaultEvent):
                    yield event

    # ------------------------------------------------------------------ internals
    def _check_link(self, *, during_reconnect: bool = False) -> None:
        if self._link_error is not None:
            raise self._link_error
        if self._link_state is LinkState.DOWN and not during_reconnect:
            raise Reconnecting("the link to the pen is down; the driver is reconnecting")

    async def _request(
        self,
        message: m.Message,
        expect: type[R],
        *,
        timeout: float | None = None,
        during_reconnect: bool = False,
    ) -> R:
        self._check_link(during_reconnect=during_reconnect)
        loop = asyncio.get_running_loop()
        wait = timeout if timeout is not None else self.config.timeout_for(message)
        sent = self._endpoint.send(message)
        future: asyncio.Future[m.Message] = loop.create_future()
        self._waiters[sent.seq] = future
        self._tracker.add(sent.seq, message, loop.time(), wait)
        self.counters.requests += 1
        began = loop.time()
        try:
            await self._write(sent.data)
            attempts = self.config.retries + 1
            for attempt in range(1, attempts + 1):
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns an answer
                    # that lands in the same loop step as a cancellation and loses the
                    # cancellation (a Ctrl-C during a request would be ignored).
                    async with asyncio.timeout(wait):
                        reply = await asyncio.shield(future)
                    break
                except TimeoutError:
                    if attempt == attempts:
                        self.counters.timeouts += 1
                        raise PenTimeout(
                            f"the pen did not answer {message.NAME} ({attempts} attempts, "
                            f"{attempts * wait:g} s); check the link"
                        ) from None
                    log.debug("no answer to %s seq %d, resending", message.NAME, sent.seq)
                    self.counters.retries += 1
                    self._tracker.retried(sent.seq, loop.time(), wait)
                    await self._write(self._endpoint.resend(message, sent.seq))
        finally:
            self._waiters.pop(sent.seq, None)
            self._tracker.cancel(sent.seq)
            if future.done() and not future.cancelled():
                future.exception()  # seen here (raised above or moot): no "never retrieved"
        self._rtts.append(loop.time() - began)
        if isinstance(reply, m.Nack):
            self.counters.refusals += 1
            raise self._refusal(message, reply)
        if not isinstance(reply, expect):  # pragma: no cover - the tracker checks the type
            raise PenError(f"unexpected answer {reply.NAME} to {message.NAME}")
        if isinstance(message, m.Start):
            self.counters.starts_acknowledged += 1
        return reply

    def _refusal(self, request: m.Message, nack: m.Nack) -> PenRefused:
        code = ErrorCode(nack.code)  # open: a code a newer pen added is UNKNOWN_<n>
        name = code.name
        detail = nack.detail
        if code in (ErrorCode.OUT_OF_RANGE, ErrorCode.NOT_ON_STEP):
            what = "limit" if code == ErrorCode.OUT_OF_RANGE else "step"
            grid = self.device_info.raw if self.device_info is not None else None
            if (
                isinstance(request, m.SetDepth)
                and code == ErrorCode.OUT_OF_RANGE
                and grid is not None
                and detail not in (grid.depth_min_um, grid.depth_max_um)
            ):
                # Inside the pen's range but past the fitted needles: the detail is their
                # length (PROTOCOL.md, "Depth limits").
                why = (
                    f"the depth is deeper than the fitted needles, {detail / 1000:g} mm: set a "
                    "depth within them, or fit a longer cartridge"
                )
            elif isinstance(request, m.SetDepth):
                why = f"{what} {detail / 1000:g} mm"
            elif isinstance(request, m.Start) and code == ErrorCode.OUT_OF_RANGE:
                why = (
                    f"the depth set is deeper than the fitted needles, {detail / 1000:g} mm: "
                    "set a depth within them, or fit a longer cartridge"
                )
            elif isinstance(request, m.SetStrokeRate):
                why = f"{what} {detail / 1000:g} Hz"
            else:
                why = f"{what} {detail}"
        elif code == ErrorCode.FAULT_ACTIVE and isinstance(request, m.ClearFaults):
            why = f"{fault_names(FaultFlags(detail))} still present: deal with the cause first"
        elif code == ErrorCode.FAULT_ACTIVE:
            why = (
                f"faults {fault_names(FaultFlags(detail))}; clear them with pen clear-faults "
                "or Pen.clear_faults()"
            )
        elif code == ErrorCode.INVALID_STATE:
            why = f"pen is {PenState(detail).name}"
        else:
            why = ""
        text = f"the pen refused {request.NAME}: {name}" + (f" ({why})" if why else "")
        return PenRefused(request.NAME, code, name, detail, text)

    async def _write(self, data: bytes) -> None:
        try:
            await self.transport.write(data)
        except LinkLost as exc:
            self._link_lost(str(exc))
            raise

    def _start_reader(self) -> None:
        self._reader = asyncio.create_task(self._read_loop(), name="pen-reader")

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self.transport.read()
                if self._info is None and len(self._before_greeting) < EARLY_TEXT_BYTES:
                    self._before_greeting += data[: EARLY_TEXT_BYTES - len(self._before_greeting)]
                for event in self._endpoint.receive_data(data):
                    if isinstance(event, MessageReceived):
                        self._last_rx = loop.time()
                        self._dispatch(event)
                    elif isinstance(event, DecodeError):
                        log.debug("dropped a frame: %s", event.describe())
        except LinkLost as exc:
            self._link_lost(str(exc))
        except OSError as exc:
            self._link_lost(f"link to {self.transport.url} failed: {exc}")

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
                self.counters.stray_answers += 1  # a late answer to a request already settled
            return
        if isinstance(message, m.Telemetry):
            self._observe_state(message.state)
            if self._telemetry:
                self._telemetry.publish(TelemetrySample.from_message(message))
        elif isinstance(message, m.Heartbeat):
            self.counters.heartbeats += 1
            self._observe_state(message.state)
        elif isinstance(message, m.Fault):
            fault = FaultEvent.from_message(message)
            if fault.active:
                self._active_faults |= fault.fault
            else:
                self._active_faults &= ~fault.fault
            self.faults.append(fault)
            self._events.publish(fault)
        elif isinstance(message, m.Cartridge):
            cartridge = CartridgeInfo.from_message(message)
            self.cartridge_events.append(cartridge)
            self._events.publish(CartridgeChanged(cartridge))

    def _observe_state(self, raw: int) -> None:
        # Whose motor runs is judged now, against this report, not later against a state
        # that may be stale: the RUNNING of the last sample before a STOP's ACK arrives with
        # the START still ours, and only a report after the ACK says how the pen is now.
        self._orphan_running = raw == PenState.RUNNING and not self._started_motor
        if raw == self._state:
            return
        # Open enum: a state a newer pen added arrives as PenState.UNKNOWN_<n>, not an int.
        state = PenState(raw)
        previous, self._state = self._state, state
        self._events.publish(StateChanged(previous, state))

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_s)
            if self._link_state is not LinkState.UP:
                continue
            if self._orphan_running and not self._started_motor:
                # A motor this session never started (its host died mid-pass): heartbeats
                # would keep it running for ever, so none go out and the pen's watchdog
                # stops it, as it would have without us. Not ``self._state``: after this
                # session's STOP is acknowledged it still says RUNNING until the pen's next
                # report (up to a telemetry period), and a motor just stopped is no orphan.
                if not self._orphan_reported:
                    self._orphan_reported = True
                    log.warning(
                        "the pen's motor is running and this connection did not start it: "
                        "no heartbeats, so its watchdog stops it within %g s",
                        self.device_info.watchdog_s,
                    )
                continue
            uptime = int((loop.time() - start) * 1e6)
            with contextlib.suppress(LinkLost):
                await self._write(self._endpoint.send(m.Heartbeat(uptime, PenState.IDLE)).data)

    def _link_timeout(self) -> float:
        c = self.config
        return c.calibration_link_timeout_s if self._held else c.link_timeout_s

    async def _liveness_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._link_state is not LinkState.UP or self._last_rx is None:
                await asyncio.sleep(self.config.heartbeat_interval_s)
                continue
            heard = self._last_rx
            timeout = self._link_timeout()
            self._liveness_wake.clear()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that
                # arrives as the wake is set (calibration mode ending, then close()), and the
                # loop would outlive the connection.
                async with asyncio.timeout(heard + timeout - loop.time()):
                    await self._liveness_wake.wait()
            except TimeoutError:
                pass
            else:
                continue  # calibration mode ended: look again with the shorter timeout
            if self._last_rx != heard or self._link_timeout() > timeout:
                continue  # heard from the pen meanwhile, or calibration mode began
            # Nothing since ``heard`` for the whole timeout. The deadline is judged by the
            # timer, not by re-reading the clock: a loop may fire a timer a hair early (its
            # clock's resolution), and "not quite yet" would then become a busy loop.
            silent = max(loop.time() - heard, timeout)
            self._link_lost(f"no valid frame from the pen for {silent:.1f} s", silent)

    def _link_lost(self, reason: str, silent_s: float | None = None) -> None:
        """The link is gone: report it, then reconnect or fail, as configured."""
        if self._link_state is not LinkState.UP or self._link_error is not None:
            return
        loop = asyncio.get_running_loop()
        if silent_s is None:
            silent_s = loop.time() - self._last_rx if self._last_rx is not None else 0.0
        self.counters.link_losses += 1
        # Before the greeting was answered there is no connection to lose yet: open() says
        # what went wrong, in its own error.
        report = log.warning if self._info is not None else log.debug
        report("link to %s lost: %s", self.transport.url, reason)
        self._events.publish(LinkDown(reason, silent_s))
        if not self.config.reconnect:
            self._fail(LinkLost(f"link to {self.transport.url} lost: {reason}"))
            return
        self._link_state = LinkState.DOWN
        self._down_since = loop.time()
        error = Reconnecting(f"link to {self.transport.url} lost ({reason}); reconnecting")
        for future in (*self._waiters.values(), *self._raw_waiters.values()):
            if not future.done():
                future.set_exception(error)
        task = asyncio.create_task(self._reconnect(), name="pen-reconnect")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._down_since is not None
        give_up = self._down_since + self.config.reconnect_give_up_s
        attempts = 0
        await self._stop_reader()
        while True:
            attempts += 1
            try:
                # One attempt (a HELLO with its retries can take seconds) must not carry the
                # reconnect past its give-up time: it is cut off there.
                async with asyncio.timeout_at(give_up):
                    await self.transport.reopen()
                    self._start_reader()
                    await self._handshake_same_pen()
                    status = await self._request(m.GetStatus(), m.Status, during_reconnect=True)
            except WrongPen as exc:
                log.warning("reconnect to %s refused: %s", self.transport.url, exc)
                await self._drop_transport()
                self._fail(exc)
                return
            except (PenError, TimeoutError) as exc:
                why = str(exc) or "cut off at the give-up time"
                log.info("reconnect attempt %d to %s failed: %s", attempts, self.transport.url, why)
                await self._stop_reader()
                try:
                    # The pause ends at the give-up time too, as judged by that timer rather
                    # than by re-reading the clock: a loop may fire a timer a hair early, and
                    # a sliver of time left must not start attempt after attempt.
                    async with asyncio.timeout_at(give_up):
                        await asyncio.sleep(self.config.reconnect_interval_s)
                except TimeoutError:
                    break
                continue
            self._link_state = LinkState.UP
            self._last_rx = loop.time()
            self.counters.reconnects += 1
            self._observe_state(status.state)
            self._report_missed_faults(status)
            down_s = loop.time() - self._down_since
            self._events.publish(LinkUp(Status.from_message(status), attempts, down_s))
            log.info("link to %s back after %.1f s", self.transport.url, down_s)
            return
        self._fail(
            LinkLost(
                f"link to {self.transport.url} lost and not back after "
                f"{self.config.reconnect_give_up_s:g} s"
            )
        )

    def _report_missed_faults(self, status: m.Status) -> None:
        """Faults the pen raised while the link was down never arrived as FAULT frames: report
        the ones its status now shows, so a watchdog stop is not only a line in LinkUp."""
        missed = FaultFlags(status.fault_flags) & ~self._active_faults
        for flag in FaultFlags:
            if flag in missed:
                fault = FaultEvent(flag, True, status.uptime_us / 1e6, 0)
                self.faults.append(fault)
                self._events.publish(fault)
        self._active_faults = FaultFlags(status.fault_flags)

    def _fail(self, error: PenError, *, ended: bool = False) -> None:
        """The connection is over: fail what waits, end the subscriptions."""
        if self._link_error is not None:
            return
        self._link_error = error
        self._link_state = LinkState.CLOSED
        current = asyncio.current_task()
        for task in self._tasks:  # heartbeats and liveness have nothing left to do
            if task is not current:
                task.cancel()
        for future in (*self._waiters.values(), *self._raw_waiters.values()):
            if not future.done():
                future.set_exception(error)
        # A connection closed by its user ends subscriptions quietly; a lost one raises.
        self._telemetry.end(None if ended else error)
        self._events.end(None if ended else error)


EARLY_TEXT_BYTES = 512
"""How much of what arrives before the pen's first answer is kept to quote in an error."""


def _text_said(data: bytes) -> str:
    """The first line of printable text in ``data`` (a server's refusal, a modem's banner),
    or "" when it is protocol bytes or noise: frames always contain a 0x00 delimiter."""
    if not data or b"\x00" in data:
        return ""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if line.isprintable() and len(line) >= 8 else ""


def _no_report(_event: QueueOverflow) -> None:
    """Overflow of the event queue itself is logged, not published into the queue it fills."""


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
        from .transports.capture import CaptureTransport

        transport = CaptureTransport(transport, capture)
    return Pen(transport, config)
