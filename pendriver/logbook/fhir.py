"""The logbook's passes as HL7 FHIR R4 resources: a ``Bundle`` (type ``collection``) of one
``Encounter`` per session and one ``Procedure`` per pass.

Plain dicts out (FHIR JSON), so the export needs no FHIR library at run time; the tests parse
every resource back with the ``fhir.resources`` models (its ``R4B`` package: 8.3 has no ``R4``
one, and R4B changed nothing in the resources used here, so R4B-valid JSON is R4-valid).

The mapping, and why:

- ``Procedure.status``: ``completed`` for a pass that ran to its end with all its figures;
  ``stopped`` ("terminated prior to the full completion of the intended actions") for one
  recovered incomplete from a checkpoint, or ended by a stop, a fault or a lost link;
  ``statusReason`` says how it ended.
- ``subject``: the client as a *logical* Patient reference (an identifier, no resource): the
  logbook keeps only a pseudonymous id, and a receiving system matches it to its own patient.
  ``performer.actor``: the operator, likewise a Practitioner reference with an identifier.
- ``performedPeriod``: R4's name (``occurrence[x]`` is R5's) for the pass's start and end.
- ``bodySite``: the zone as text, with a SNOMED CT body structure code only for the zones
  whose code is unambiguous (:data:`SNOMED_BODY_SITES`); the others are text only rather than
  a code that is nearly right.
- ``usedReference``: the pen and the cartridge as contained ``Device`` resources (serial,
  model, firmware and calibration as versions; lot, expiry). Not ``focalDevice``: that is for
  a device the procedure implants, removes or manipulates, and a pen is a tool.
- Depth set point, measured depth, stroke rate, duration, strokes, punctures and density as
  ``extension``s (UCUM quantities), and the same in words in a ``note`` with any override and
  correction, for a reader that ignores unknown extensions.
- ``encounter``: the session's Encounter; ``Bundle.identifier``: the logbook's chain head
  (``seq:hash``), the anchor of the export.

:data:`NAMESPACE` is a **placeholder**: ``pendriver.example`` is not a published
StructureDefinition or NamingSystem host; a clinic that exchanges these resources for real
should publish its own and replace it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .export import CorrectionNote, Gathered, density_figures
from .records import Operator, Pass, Session, utc_text
from .store import Entry

NAMESPACE = "https://pendriver.example/fhir"
"""Placeholder namespace of this project's extensions and identifier systems (see above)."""
EXT = f"{NAMESPACE}/StructureDefinition"
IDS = f"{NAMESPACE}/NamingSystem"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"

SNOMED_BODY_SITES: dict[str, tuple[str, str]] = {
    "forehead": ("52795006", "Forehead structure"),
    "nose": ("45206002", "Nasal structure"),
    "neck": ("45048000", "Neck structure"),
    "hands": ("85562004", "Hand structure"),
}
"""Zone -> SNOMED CT body structure (code, display), only where the code is certain. Cheeks,
glabella, periorbital, perioral, décolletage, acne scars and stretch marks are sent as text
(acne scars and stretch marks are not body sites at all)."""

_UUID_NS = uuid.uuid5(uuid.NAMESPACE_URL, NAMESPACE)


def resource_id(kind: str, key: str) -> str:
    """A stable id (a UUID) for a record, so exporting twice gives the same resources."""
    return str(uuid.uuid5(_UUID_NS, f"{kind}:{key}"))


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _ext_quantity(name: str, value: float, unit: str, code: str) -> dict[str, Any]:
    return {"url": f"{EXT}/{name}", "valueQuantity": _quantity(value, unit, code)}


def _ext_parts(name: str, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"url": f"{EXT}/{name}", "extension": list(parts)}


def _part_quantity(name: str, value: float, unit: str, code: str) -> dict[str, Any]:
    return {"url": name, "valueQuantity": _quantity(value, unit, code)}


def _nonempty(**fields: Any) -> dict[str, Any]:
    """FHIR forbids empty strings and empty lists: drop them."""
    return {k: v for k, v in fields.items() if v not in ("", None, [], {})}


def patient_ref(client_id: str) -> dict[str, Any]:
    return {
        "type": "Patient",
        "identifier": {"system": f"{IDS}/client-id", "value": client_id},
        "display": f"client {client_id} (pseudonymous)",
    }


def practitioner_ref(operator_id: str, operator: Operator | None) -> dict[str, Any]:
    name = operator.name if operator is not None and operator.name.strip() else operator_id
    return {
        "type": "Practitioner",
        "identifier": {"system": f"{IDS}/operator-id", "value": operator_id},
        "display": name,
    }


def body_site(zone: str) -> dict[str, Any]:
    code = SNOMED_BODY_SITES.get(zone)
    if code is None:
        return {"text": zone}
    return {"coding": [{"system": SNOMED, "code": code[0], "display": code[1]}], "text": zone}


def pen_device(p: Pass) -> dict[str, Any]:
    versions = [
        {"type": {"text": "firmware"}, "value": p.pen.firmware} if p.pen.firmware else None,
        (
            {"type": {"text": "calibration"}, "value": p.calibration_version}
            if p.calibration_version
            else None
        ),
    ]
    return _nonempty(
        resourceType="Device",
        id="pen",
        serialNumber=p.pen.serial,
        deviceName=[{"name": p.pen.model, "type": "model-name"}] if p.pen.model else None,
        modelNumber=p.pen.model,
        type={"text": "microneedling pen"},
        version=[v for v in versions if v is not None],
    )


def cartridge_device(p: Pass) -> dict[str, Any]:
    c = p.cartridge
    return _nonempty(
        resourceType="Device",
        id="cartridge",
        identifier=[{"system": f"{IDS}/cartridge-id", "value": c.cartridge_id}],
        lotNumber=c.lot,
        expirationDate=c.expiry.isoformat(),
        type={"text": "microneedle cartridge (single use)"},
        property=(
            [{"type": {"text": "needles"}, "valueQuantity": [{"value": c.needles}]}]
            if c.needles
            else None
        ),
    )


def figures_extensions(p: Pass) -> list[dict[str, Any]]:
    f = p.figures
    mean, p95, peak = density_figures(p)
    density = [
        _part_quantity(name, v, "punctures/cm²", "/cm2")
        for name, v in (("mean", mean), ("p95", p95), ("max", peak))
        if v is not None
    ]
    out = [
        _ext_quantity("depth-setpoint", p.depth_setpoint_mm, "mm", "mm"),
        _ext_parts(
            "depth-measured",
            [
                _part_quantity("mean", f.depth_mean_mm, "mm", "mm"),
                _part_quantity("min", f.depth_min_mm, "mm", "mm"),
                _part_quantity("max", f.depth_max_mm, "mm", "mm"),
            ],
        ),
        _ext_quantity("stroke-rate", f.stroke_rate_hz, "Hz", "Hz"),
        _ext_quantity("duration", f.duration_s, "s", "s"),
        {"url": f"{EXT}/strokes", "valueInteger": f.strokes},
        {"url": f"{EXT}/punctures", "valueInteger": f.punctures},
    ]
    if density:
        out.append(_ext_parts("density", density))
    return out


def _summary(p: Pass) -> str:
    f = p.figures
    mean, p95, peak = density_figures(p)
    dens = ", ".join(
        f"{label} {v:.0f}/cm²"
        for label, v in (("mean", mean), ("p95", p95), ("max", peak))
        if v is not None
    )
    return (
        f"Microneedling pass on {p.zone}: set {p.depth_setpoint_mm:g} mm, measured mean "
        f"{f.depth_mean_mm:g} mm (min {f.depth_min_mm:g}, max {f.depth_max_mm:g}); "
        f"{f.stroke_rate_hz:g} Hz for {f.duration_s:g} s, {f.strokes} strokes, "
        f"{f.punctures} punctures" + (f"; density {dens}" if dens else "") + "; "
        f"ended: {p.ended_how}"
        + (
            " (incomplete: the figures stop at the last checkpoint)"
            if p.figures_from_checkpoint
            else ("" if p.complete else " (incomplete)")
        )
    )


def procedure(
    e: Entry[Pass],
    operator: Operator | None,
    encounter_url: str | None,
    corrections: Sequence[CorrectionNote] = (),
) -> dict[str, Any]:
    """One pass as a FHIR R4 Procedure (see the module docstring for the mapping)."""
    p = e.record
    completed = p.complete and p.ended_how == "completed"
    notes = [_summary(p)]
    if p.depth_override:
        notes.append(f"Depth override: {p.depth_override}")
    if p.density_override:
        notes.append(f"Density override: {p.density_override}")
    notes.extend(f"Correction: {c.line()}" for c in corrections)
    return _nonempty(
        resourceType="Procedure",
        id=resource_id("pass", p.pass_id),
        contained=[pen_device(p), cartridge_device(p)],
        extension=[
            *figures_extensions(p),
            _ext_parts(
                "logbook-record",
                [{"url": "seq", "valueInteger": e.seq}, {"url": "hash", "valueString": e.hash}],
            ),
        ],
        identifier=[{"system": f"{IDS}/pass-id", "value": p.pass_id}],
        status="completed" if completed else "stopped",
        statusReason=None if completed else {"text": p.ended_how},
        code={"text": "Microneedling pass (collagen induction therapy)"},
        subject=patient_ref(p.client_id),
        encounter={"reference": encounter_url} if encounter_url else None,
        performedPeriod={"start": utc_text(p.started_at), "end": utc_text(p.ended_at)},
        performer=[{"actor": practitioner_ref(p.operator_id, operator)}],
        bodySite=[body_site(p.zone)],
        usedReference=[
            {"reference": "#pen", "display": f"pen {p.pen.serial}"},
            {
                "reference": "#cartridge",
                "display": f"cartridge {p.cartridge.cartridge_id} lot {p.cartridge.lot}",
            },
        ],
        note=[{"text": t} for t in notes],
    )


def encounter(e: Entry[Session], operator: Operator | None) -> dict[str, Any]:
    """A session as a FHIR R4 Encounter (ambulatory; finished once it has ended)."""
    s = e.record
    period = {"start": utc_text(s.started_at)}
    if s.ended_at is not None:
        period["end"] = utc_text(s.ended_at)
    return _nonempty(
        resourceType="Encounter",
        id=resource_id("session", s.session_id),
        identifier=[{"system": f"{IDS}/session-id", "value": s.session_id}],
        status="finished" if s.ended_at is not None else "in-progress",
        **{
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "AMB",
                "display": "ambulatory",
            }
        },
        subject=patient_ref(s.client_id),
        participant=[{"individual": practitioner_ref(s.operator_id, operator)}],
        period=period,
    )


def bundle(g: Gathered, *, timestamp: datetime | None = None) -> dict[str, Any]:
    """The gathered passes as a FHIR R4 Bundle of type ``collection``: one Encounter per
    session that has a selected pass, then the passes' Procedures in chain order."""
    entries: list[dict[str, Any]] = []
    urls: dict[str, str] = {}
    wanted = {e.record.session_id for e in g.passes}
    for sid, s in g.sessions.items():
        if sid not in wanted:
            continue
        res = encounter(s, g.operators.get(s.record.operator_id))
        urls[sid] = f"urn:uuid:{res['id']}"
        entries.append({"fullUrl": urls[sid], "resource": res})
    for e in g.passes:
        res = procedure(
            e,
            g.operators.get(e.record.operator_id),
            urls.get(e.record.session_id),
            g.corrections.get(e.seq, ()),
        )
        entries.append({"fullUrl": f"urn:uuid:{res['id']}", "resource": res})
    head_seq, head_hash = g.head
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "identifier": {"system": f"{IDS}/logbook-chain-head", "value": f"{head_seq}:{head_hash}"},
        "type": "collection",
        "timestamp": utc_text(timestamp or datetime.now(UTC)),
    }
    if entries:
        out["entry"] = entries
    return out


__all__ = [
    "NAMESPACE",
    "SNOMED_BODY_SITES",
    "bundle",
    "encounter",
    "procedure",
    "resource_id",
]
