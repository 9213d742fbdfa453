"""Default zone profiles: depth ranges from shared/reference/domain-facts.md §3.1.

No single authoritative guideline exists (§3.1), so these are *configurable defaults*: a clinic
replaces any of them with its own :class:`ZoneProfile` record (``Logbook.set_zone_profile``).
How the defaults were chosen, the same way for every zone:

- ``depth_min_mm``: the shallowest figure given for the zone (informational: too shallow is not
  unsafe, so only the maximum is enforced).
- ``depth_max_mm``: the Dr. Pen manufacturer chart's thick-skin maximum [C], capped at 1.5 mm,
  the deepest the FDA-cleared pens were evaluated at (SkinPen labeling: ">1.5 mm not evaluated"
  [B]; Exceed max 1.5 mm [A]). The RF-microneedling figures [A*] are a different modality and
  are not used.
- ``max_density_per_cm2``: no source gives a per-session ceiling (§2, §7 open question 7). The
  target density is 250-300 punctures/cm² (§2.2, PRIME 2015 [B]) and one pen pass can reach
  ~1,000/cm² (§2.2, derived model), so the default ceiling is 1,500/cm² per zone per session:
  five times the upper target. UNCONFIRMED; set it per clinic.
"""

from __future__ import annotations

from .records import ZoneProfile

DEFAULT_MAX_DENSITY_PER_CM2 = 1500.0
"""UNCONFIRMED: see the module docstring."""


def _zone(name: str, lo: float, hi: float, source: str) -> ZoneProfile:
    return ZoneProfile(name, lo, hi, DEFAULT_MAX_DENSITY_PER_CM2, "", source)


DEFAULT_ZONES: dict[str, ZoneProfile] = {
    z.zone: z
    for z in (
        _zone("forehead", 0.25, 0.75, "Dr. Pen 0.25-0.5 thin / 0.5-0.75 thick; guides 0.25-0.5"),
        _zone("glabella", 0.25, 1.0, "Dr. Pen 0.25-0.5 thin / 0.5-1.0 thick"),
        _zone("periorbital", 0.2, 0.5, "Dr. Pen 0.25 thin / 0.25-0.5 thick; guides 0.2-0.3"),
        _zone("nose", 0.25, 0.5, "Dr. Pen 0.25 thin / 0.5 thick (guides to 0.75: not taken)"),
        _zone(
            "cheeks",
            0.5,
            1.5,
            "Dr. Pen cheeks & chin 0.5-1.0 thin / 1.0-2.0 thick, capped at 1.5 (SkinPen label)",
        ),
        _zone("perioral", 0.25, 0.75, "Dr. Pen 0.25 thin / 0.25-0.75 thick; guides 0.25-0.5"),
        # Neck: §3.1 has only the RF review's 1.5 mm (another modality) and a SkinPen indication
        # without a depth. Conservative: thin-skin face figures.
        _zone("neck", 0.25, 0.5, "no mechanical-pen figure (RF review 1.5 mm not used)"),
        # Décolletage and hands: UNCONFIRMED in §3.1, no sourced number. Conservative defaults
        # (thin skin, like the neck) until a clinic sets its own.
        _zone("décolletage", 0.25, 0.5, "UNCONFIRMED: no sourced number; conservative default"),
        _zone("hands", 0.25, 0.5, "UNCONFIRMED: no sourced number; conservative default"),
        _zone(
            "acne scars",
            0.5,
            1.5,
            "Dr. Pen 1.0-1.25 / 1.5-2.0; guides 0.5-1.5; SkinPen trial 0.25-2.0, label >1.5 not "
            "evaluated; Exceed max 1.5",
        ),
        _zone(
            "stretch marks",
            1.0,
            1.5,
            "Dr. Pen 1.5-2.0; guides 1.0-2.5; capped at 1.5 (SkinPen label)",
        ),
    )
}
"""The built-in profiles, by zone name."""


def zone_key(name: str) -> str:
    """A zone's name as looked up: trimmed, lower case, single spaces, ``_``/``-`` as spaces."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def profiles_with(overrides: list[ZoneProfile]) -> dict[str, ZoneProfile]:
    """The defaults, replaced and extended by ``overrides`` in order (later wins)."""
    out = dict(DEFAULT_ZONES)
    for p in overrides:
        out[zone_key(p.zone)] = p
    return out
