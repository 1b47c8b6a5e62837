"""Results as data frames for notebooks: pandas is optional (``pip install pandas``); without it the same
rows stay plain dicts (``to_records``) and ``to_frame`` says how to get it."""

from __future__ import annotations

from typing import Any

from moesim.util.errors import MoesimError


def to_frame(rows: list[dict[str, Any]]) -> Any:
    """``pandas.DataFrame(rows)``; MoesimError naming the install where pandas is missing."""
    try:
        import pandas as pd
    except ImportError:
        raise MoesimError("to_frame needs pandas (pip install pandas); to_records() / the list itself gives "
                          "the same rows as dicts") from None
    return pd.DataFrame(list(rows))


class Rows(list):
    """A list of flat dicts, one per row (``api.sweep``'s points), that also gives a data frame."""

    def to_frame(self) -> Any:
        return to_frame(self)
