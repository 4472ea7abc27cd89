"""The identity inspection's `runtime: triton` configuration is validated like every other key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inspector.inspections.excipient_identity import ExcipientIdentity


def test_triton_runtime_needs_its_block_and_rejects_unknown_keys():
    P = ExcipientIdentity.Params
    assert P().runtime == "onnxruntime" and P().triton is None
    p = P(runtime="triton", triton={"url": "gpu-1:8001"})
    assert (p.triton.timeout_ms, p.triton.on_unavailable, p.triton.model, p.triton.version) == (1000, "error", None, "")
    with pytest.raises(ValidationError, match="runtime: triton needs a triton"):
        P(runtime="triton")
    with pytest.raises(ValidationError, match="timeout"):
        P(runtime="triton", triton={"url": "gpu-1:8001", "timeout": 5})  # a typo is an error, not ignored
    with pytest.raises(ValidationError, match="on_unavailable"):
        P(runtime="triton", triton={"url": "gpu-1:8001", "on_unavailable": "retry"})
    with pytest.raises(ValidationError, match="version"):
        P(runtime="triton", triton={"url": "gpu-1:8001", "version": "latest"})  # Triton versions are integers
