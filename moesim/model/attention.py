"""The attention-kind interface (``AttentionKind``) and the byte sizes every kind shares. A kind answers, per
block of a ``ModelSpec``: parameters, KV bytes per cached token, recurrent state per sequence, the core's
work at a context, the projections as GEMMs, and how tensor parallelism splits its cache."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from moesim.config.schema import ModelSpec

ACT_BYTES = 2  # BF16 activations
KV_BYTES = {"bf16": 2, "fp8": 1}  # per cached element, by model.kv_cache_dtype


def kv_elem_bytes(m: ModelSpec) -> int:
    """Bytes of one cached key/value element (``model.kv_cache_dtype``)."""
    return KV_BYTES[m.kv_cache_dtype]


class AttentionKind(ABC):
    """One attention kind. Methods take the ``ModelSpec`` that carries the shape; numbers are per block."""

    name = ""
    mixes = True  # False: a block without a token mixer (an FFN-only block of Nemotron-H)
    kv_split_by_tp = True  # tensor parallelism splits the cache by KV head (MLA's latent is whole on every rank)
    family = ""  # the family of measured attention tables that times it ("gqa", "mla"; "": none, roofline)

    @abstractmethod
    def params(self, m: ModelSpec) -> float:
        """Parameters of one block's attention."""

    @abstractmethod
    def kv_bytes_per_token(self, m: ModelSpec) -> float:
        """Bytes of KV cache per cached token."""

    @abstractmethod
    def core_dims(self, m: ModelSpec, decode: bool) -> tuple[int, int]:
        """(d_qk, d_v) per head of the attention core, prefill or decode form."""

    @abstractmethod
    def cache_heads(self, m: ModelSpec) -> int:
        """Heads of the cached keys and values (GQA's KV heads; one shared latent for MLA)."""

    @abstractmethod
    def projections(self, m: ModelSpec) -> list[tuple[int, int]]:
        """(n, k) of the block's projection GEMMs."""

    def attended(self, m: ModelSpec, context: float) -> float:
        """Tokens one query attends over in a sequence of ``context`` tokens (decode: the whole cache)."""
        return context

    def cached(self, m: ModelSpec, context: float) -> float:
        """Tokens of KV cache a sequence of ``context`` tokens keeps."""
        return context

    def requires(self, m: ModelSpec) -> str | None:
        """The model field this kind needs and ``m`` lacks (checked with the scenario), or None."""
        return None

    def state_bytes(self, m: ModelSpec) -> float:
        """Bytes a sequence keeps whatever its length (a recurrent state: linear attention, SSMs); 0 here."""
        return 0.0

    def query_heads(self, m: ModelSpec) -> int:
        """Query heads of this kind's blocks (the model's, unless the kind has its own shape)."""
        return m.num_attention_heads

    def side_work(self, m: ModelSpec, tokens: np.ndarray, decode: bool, context: float, tp: int = 1,
                  queries: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(FLOPs, bytes) of work beside the core that a measured core table does not time (DSA's indexer)."""
        return np.zeros_like(tokens), np.zeros_like(tokens)

    def core_work(self, m: ModelSpec, tokens: np.ndarray, decode: bool, context: float, tp: int = 1,
                  queries: int = 1) -> tuple[np.ndarray, np.ndarray, float]:
        """The attention core of one block on one GPU: (FLOPs [G], bytes of cache read [G], keys one query
        attends over). ``tokens`` per GPU of an attention-TP group of ``tp`` (the group's tp·T tokens, 1/tp of
        the heads each); ``queries`` decode queries per sequence (MTP verify). Scores and values over the
        attended keys: prefill causal (``causal_span``), decode over the cache, read once per sequence."""
        dqk, dv = self.core_dims(m, decode)
        seen = self.attended(m, context)
        span = seen if decode else causal_span(seen, context)
        flops = 2.0 * tokens * self.query_heads(m) * (dqk + dv) * span
        share = 1.0 / tp if self.kv_split_by_tp else 1.0
        kvb, group = self.kv_bytes_per_token(m), tokens * tp
        cache = group / queries * seen * kvb * share if decode else group * kvb * 2 * share
        return flops, cache, seen


def causal_span(window: float, context: float) -> float:
    """Mean keys per query of causal prefill over ``context`` tokens when each query sees at most ``window``
    keys: context / 2 without a window (window = context)."""
    if window >= context:
        return context / 2.0
    return window - window * window / (2.0 * context)
