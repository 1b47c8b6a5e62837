"""Field types the scenario sections share: quantities that accept unit strings (``160GB/s``, ``3us``,
``80GiB``) or plain SI numbers and are stored in SI units, and the strict base model."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from moesim.units import parse_quantity


def _unit(kind: str):
    return BeforeValidator(lambda v: parse_quantity(v, kind))


Bandwidth = Annotated[float, _unit("bandwidth"), Field(gt=0)]
Seconds = Annotated[float, _unit("time"), Field(ge=0)]
Bytes = Annotated[float, _unit("bytes"), Field(gt=0)]
Flops = Annotated[float, _unit("flops"), Field(gt=0)]


class Strict(BaseModel):
    """Frozen, and a key the schema does not know is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)
