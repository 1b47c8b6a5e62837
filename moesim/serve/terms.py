"""The time an engine spends outside the GPU's kernels, per engine, as the serving DES spends it: per
iteration on the host, per request in the front end, per disaggregated request in the hand-over; and the MTP
acceptance the engine reaches. Values are ``fitted`` on measured deployments (moesim.studies.e2e.fit,
`moesim validate e2e --refit`) and read from ``data/engine_terms.json``, which names the rows each was fitted
on; an engine with no measured rows (vLLM) takes the ``pooled`` terms, fitted on all engines' rows together.
A scenario's ``serving.overheads`` and ``serving.mtp.acceptance`` win over them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from moesim.config.serving import MtpSpec, ServingSpec

TERMS_FILE = Path(__file__).parent / "data" / "engine_terms.json"
FIELDS = ("host_s", "request_s", "handoff_s")


@dataclass(frozen=True)
class Overheads:
    """Seconds per iteration (host_s), per request before the scheduler (request_s) and per disaggregated
    request between prefill and KV transfer (handoff_s)."""

    host_s: float = 0.0
    request_s: float = 0.0
    handoff_s: float = 0.0


@cache
def fitted_terms(path: Path = TERMS_FILE) -> dict[str, Any]:
    """The fitted terms file: {"engines": {name: {host_s, request_s, handoff_s, mtp_acceptance}}, ...}; an
    empty table where it is missing."""
    if not path.is_file():
        return {"engines": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def engine_terms(engine: str | None) -> dict[str, float]:
    """One engine's fitted values; an engine with no rows of its own (vLLM) gets the ``pooled`` ones, fitted on
    every engine's rows together; {} without an engine."""
    if engine is None:
        return {}
    doc = fitted_terms()
    own = doc["engines"].get(engine)
    return {k: float(v) for k, v in (own if own is not None else doc.get("pooled", {})).items()}


def overheads(sv: ServingSpec) -> Overheads:
    """The overheads a serving run spends: the scenario's where it gives them, else its engine's fitted ones."""
    fit = engine_terms(sv.engine)
    given = sv.overheads
    return Overheads(*(getattr(given, f) if getattr(given, f) is not None else fit.get(f, 0.0) for f in FIELDS))


def mtp_of(sv: ServingSpec) -> MtpSpec | None:
    """The scenario's MTP, its acceptance the engine's fitted one where the scenario leaves it out."""
    mtp = sv.mtp
    if mtp is None or "acceptance" in mtp.model_fields_set:
        return mtp
    acc = engine_terms(sv.engine).get("mtp_acceptance")
    return mtp if acc is None else mtp.model_copy(update={"acceptance": acc})
