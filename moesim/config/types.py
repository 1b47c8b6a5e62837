"""Field types the scenario sections share: quantities that accept unit strings (``160GB/s``, ``3us``,
``80GiB``) or plain SI numbers and are stored in SI units, and the strict base model."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from moesim.util.units import parse_quantity


def _unit(kind: str):
    return BeforeValidator(lambda v: parse_quantity(v, kind))


Bandwidth = Annotated[float, _unit("bandwidth"), Field(gt=0)]
Seconds = Annotated[float, _unit("time"), Field(ge=0)]
Bytes = Annotated[float, _unit("bytes"), Field(gt=0)]
Flops = Annotated[float, _unit("flops"), Field(gt=0)]


# A name from one of the registries (placement, all-to-all algorithm, ...): the schema checks its form, the
# cross-field checks (moesim.iteration.checks) check it against the registry, which lives in a higher layer.
RegistryName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

MAX_COUNT = 10**12


class Strict(BaseModel):
    """Frozen, a key the schema does not know is an error, and NaN or infinite numbers are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded(cls, v, info):
        """No count in a scenario comes near 10^12 (sizes past it overflow int64 products); seeds may."""
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_COUNT and info.field_name != "seed":
            raise ValueError(f"{v} is beyond any real count (at most {MAX_COUNT:.0e})")
        return v
