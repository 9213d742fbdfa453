"""Provoking faults in a running simulated pen: one API for fixtures, tests and tools.

A :class:`FaultControl` wraps a :class:`~simulator.service.PenService` and does, on request,
what goes wrong with real pens: a bad or broken link, a jammed motor, a flat battery, a
cartridge pulled mid-pass, a silent host, a reboot. Every call acts *now* on the pen's clock;
for a sequence over time use :meth:`FaultControl.scenario` with a TOML scenario file.

A pen served on another thread is reached through ``call`` (which runs a function on the
pen's own loop), so the same object works for in-process and served pens.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .cartridge import Cartridge
from .firmware import PenFirmware
from .linkfaults import LinkFaultConfig
from .scenario import Scenario, ScenarioRunner
from .service import PenService

T = TypeVar("T")


def _direct(fn: Callable[[], Any]) -> Any:
    return fn()


class FaultControl:
    def __init__(
        self, service: PenService, *, call: Callable[[Callable[[], Any]], Any] = _direct
    ) -> None:
        self.service = service
        self._call = call

    @property
    def firmware(self) -> PenFirmware:
        return self.service.firmware

    def on_pen(self, fn: Callable[[PenFirmware], T]) -> T:
        """Run ``fn(firmware)`` where the pen lives and return its result."""
        result: T = self._call(lambda: fn(self.service.firmware))
        return result

    # ------------------------------------------------------------------ the link
    def link(
        self,
        *,
        drop: float = 0.0,
        corrupt: float = 0.0,
        duplicate: float = 0.0,
        split: float = 0.0,
        delay_s: float = 0.0,
        jitter_s: float = 0.0,
        seed: int = 0,
    ) -> None:
        """Make both directions of the wire this bad from now on (probabilities per byte for
        drop and corrupt, per chunk for duplicate and split; see ``LinkFaultConfig``)."""
        config = LinkFaultConfig(drop, corrupt, duplicate, split, delay_s, jitter_s, seed)
        self._call(lambda: self.service.set_link_faults(config))

    def clear_link(self) -> None:
        """A perfect wire again (a link loss in progress ends too)."""

        def clear() -> None:
            self.service.set_link_faults(LinkFaultConfig())
            if self.service.link is not None:
                self.service.link.restore()

        self._call(clear)

    def link_loss(self, seconds: float) -> None:
        """Cut the link both ways for ``seconds`` from now (cable pulled, radio out of range)."""
        if not seconds > 0:
            raise ValueError(f"a link loss lasts a positive time, got {seconds!r}")

        def cut() -> None:
            link = self.service.link or self.service.set_link_faults(LinkFaultConfig())
            link.cut(self.service.firmware.clock.now(), seconds)

        self._call(cut)

    # ------------------------------------------------------------------ the device
    def motor_stall(self) -> None:
        self.on_pen(lambda fw: fw.stall_motor())

    def battery(self, charge: float) -> None:
        """Set the state of charge (0-1); below about 0.045 the pen faults BATTERY_LOW."""
        self.on_pen(lambda fw: fw.set_battery_charge(charge))

    def pull_cartridge(self) -> Cartridge | None:
        return self.on_pen(lambda fw: fw.remove_cartridge())

    def fit_cartridge(self, cartridge: Cartridge | None = None, *, cartridge_id: str = "") -> None:
        """Fit ``cartridge``, or a fresh one for this pen (``cartridge_id`` or a new id)."""

        def fit(fw: PenFirmware) -> None:
            chosen = cartridge
            if chosen is None:
                ident = cartridge_id or fw.fresh_cartridge_id(f"FRESH-{fw.serial_number[-6:]}", 3)
                chosen = Cartridge.for_profile(fw.profile, ident)
            fw.insert_cartridge(chosen)

        self.on_pen(fit)

    def nvm_write_failure(self, at: int = 1) -> None:
        """Make the ``at``-th flash operation from now (1: the next) fail with the power on,
        as a worn sector does: the request that needed the write is answered NACK NVM_ERROR."""
        self.on_pen(lambda fw: fw.nvm.flash.fail_at(at))

    def power_cut_at_flash_write(self, at: int = 1) -> None:
        """Cut the power during the ``at``-th flash operation from now: the pen reboots from
        what the flash holds (the record before or after the write, never a blend)."""
        self.on_pen(lambda fw: fw.nvm.flash.cut_power_at(at))

    def watchdog_expiry(self) -> None:
        self.on_pen(lambda fw: fw.expire_watchdog())

    def reboot(self) -> None:
        self.on_pen(lambda fw: fw.power_cycle())

    def brownout(self) -> None:
        self.on_pen(lambda fw: fw.power_cycle(brownout=True))

    # ------------------------------------------------------------------ over time
    def scenario(self, scenario: Scenario | str | Path) -> ScenarioRunner:
        """Play a scenario (a :class:`Scenario` or a TOML file) from now on."""
        loaded = scenario if isinstance(scenario, Scenario) else Scenario.load(scenario)
        runner: ScenarioRunner = self._call(lambda: self.service.run_scenario(loaded))
        return runner
