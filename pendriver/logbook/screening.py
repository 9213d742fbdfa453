"""The contraindication questions asked before every session (domain-facts.md §3.4).

Each is answered yes (present) or no. Any yes blocks the session unless a clinician records an
override reason. A clinic adds its own questions (:attr:`Clinic.screening_items`); they count
exactly like the standard ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from .records import Answer, Screening

STANDARD_ITEMS: tuple[str, ...] = (
    "pregnancy or breastfeeding",
    "isotretinoin within 6 months",
    "active infection or herpes",
    "keloid tendency",
    "anticoagulants or bleeding disorder",
    "metal or anaesthetic allergy",
    "active acne or rosacea in the area",
)
"""§3.4's items. Isotretinoin: 6 months per the package insert; some clinics use 3 or 12, and
the ASDS 2017 consensus doubts the delay for other procedures (§3.4) — a clinic may replace the
wording with its own item."""


def items_for(clinic_items: Iterable[str] = ()) -> tuple[str, ...]:
    """Every question a clinic asks: the standard ones, then its own (no duplicates)."""
    out = list(STANDARD_ITEMS)
    for item in clinic_items:
        if item not in out:
            out.append(item)
    return tuple(out)


def screening(
    screening_id: str,
    client_id: str,
    operator_id: str,
    taken_at: datetime,
    answers: Mapping[str, bool],
    *,
    clinic_items: Iterable[str] = (),
    override_reason: str = "",
    override_by: str = "",
) -> Screening:
    """A screening from ``{question: yes}``; every question must be answered, and only those.

    Raises ``ValueError`` naming the unanswered or unknown questions.
    """
    items = items_for(clinic_items)
    missing = [i for i in items if i not in answers]
    if missing:
        raise ValueError(f"screening is not complete: answer {'; '.join(missing)}")
    unknown = [i for i in answers if i not in items]
    if unknown:
        raise ValueError(
            f"unknown screening question {'; '.join(unknown)}: add it to the clinic's items first"
        )
    return Screening(
        screening_id,
        client_id,
        operator_id,
        taken_at,
        tuple(Answer(i, bool(answers[i])) for i in items),
        override_reason.strip(),
        override_by,
    )


def blocking(s: Screening) -> tuple[str, ...]:
    """The yes answers that block the session: none once a clinician gave a reason."""
    return () if s.override_reason.strip() else s.positives
