"""Which line-integration hooks the daemon runs (``inspector run`` appends these to
``Supervisor.hook_factories``). Modules of disabled features are not imported (asyncua stays unloaded)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from inspector.line.settings import line_config, opcua_config, operator_config

if TYPE_CHECKING:
    from inspector.config import Config


def hook_factories(cfg: Config) -> list[Callable[[Any], Any]]:
    out: list[Callable[[Any], Any]] = []
    if line_config(cfg).enabled:
        from inspector.line.reject_hook import RejectHook

        out.append(RejectHook)
    if opcua_config(cfg).enabled:
        from inspector.line.opcua_hook import OpcUaHook

        out.append(OpcUaHook)
    if operator_config(cfg).enabled and cfg.metrics.enabled:
        from inspector.ops.operator_page import OperatorHook

        out.append(OperatorHook)
    return out
