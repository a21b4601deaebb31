"""State of one ingress replica, shared by its ASGI middleware and its routes.

It lives in its own module on purpose: ``serve.ingress`` pickles the FastAPI app by value, so a
module-level object in ``ingress.py`` would be copied, and the middleware and ``reconfigure()``
would each see a different copy. A module is always pickled by reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from configs.ingress import IngressConfig
from deployments.coalesce import CallCoalescer
from deployments.ingress.circuit import BreakerRegistry


@dataclass
class ReplicaState:
    """Accepted API keys (as bytes), how they were configured, and the live config."""

    api_keys: list[bytes] = field(default_factory=list)
    key_mode: str = "unset"
    config: IngressConfig = field(default_factory=IngressConfig)
    # One circuit breaker per node (deployment name), created on first call.
    breakers: BreakerRegistry = field(default_factory=BreakerRegistry)
    # One call coalescer per (node, timeout), created on first call; rebuilt on reconfigure.
    coalescers: dict[str, CallCoalescer] = field(default_factory=dict)


STATE = ReplicaState()
