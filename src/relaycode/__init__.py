"""relay: run AI coding work as a multi-model pipeline.

The public API is pinned here. Importing this package is cheap: nothing heavy
(pydantic-ai, provider SDKs, OpenTelemetry) is imported until it is used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
