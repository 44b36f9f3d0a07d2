"""Datadog log items for failures, closed chains and (optionally) every event.

The items are plain dicts in the shape of datadog-api-client's HTTPLogItem; the sink adds service, ddtags and
env at send time, so a change of DD_SERVICE/DD_TAGS needs no reprocessing.
"""

from __future__ import annotations

SOURCE = "okta-workflows"

STATUS_BY_TYPE = {
    "FLOW_FAIL": "error",
    "FLOW_THROTTLE": "warning",
    "FLOW_RATE_LIMIT": "warning",
    "FLOW_CANCEL": "notice",
}
CHAIN_STATUS = {"failed": "error", "timed_out": "warning", "canceled": "notice", "completed": "info"}


def _base(ev) -> dict:
    item = dict(ev.raw)  # every ELS field as received
    item.update({
        "ddsource": SOURCE,
        "timestamp": ev.timestamp_ms,
        "trace_id": ev.root_execution_id,
        "status": STATUS_BY_TYPE.get(ev.event_type, "info"),
        "event_type": ev.event_type,
    })
    if ev.org_hostname:
        item["hostname"] = ev.org_hostname
    return item


def event_log(ev) -> dict:
    item = _base(ev)
    item["message"] = f"{ev.flow_name or ev.flow_id or 'flow'}: {ev.event_type.lower()}"
    return item


def failure_log(ev, path: list[str]) -> dict:
    item = _base(ev)
    name = ev.flow_name or ev.flow_id or "flow"
    item["message"] = f"{name} failed: {ev.error_message or ev.error_type or 'no error message'}"
    item["error"] = {"kind": ev.error_type, "message": ev.error_message, "code": ev.error_code, "fatal": ev.fatal}
    item["chain"] = {"path": path, "path_text": " → ".join(path), "root_execution_id": ev.root_execution_id}
    return item


def chain_log(summary: dict) -> dict:
    status = summary["status"]
    root = summary.get("root_flow_name") or summary.get("root_flow_id") or "chain"
    duration = summary.get("duration_ms")
    text = f"chain {root} {status}"
    if duration is not None:
        text += f" in {duration:.0f} ms"
    text += f" ({summary.get('executions', 0)} executions"
    if summary.get("had_failures"):
        failing = (summary.get("failing_flow") or {}).get("flow_name")
        text += f", failure in {failing}" if failing else ", with failures"
    text += ")"
    item = {
        "ddsource": SOURCE,
        "message": text,
        "status": "error" if status == "failed" or summary.get("had_failures") and status != "completed"
        else CHAIN_STATUS.get(status, "info"),
        "timestamp": summary.get("end_ms") or summary.get("start_ms"),
        "trace_id": summary["root_execution_id"],
        "chain": summary,
    }
    err = summary.get("error")
    if err:
        item["error"] = {"kind": err.get("type"), "message": err.get("message")}
    return item
