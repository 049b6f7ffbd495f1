"""Human-readable rendering of a journey result for ``pizza-probe once``."""

from __future__ import annotations

import json

from .result import STEPS, JourneyResult


def summary_line(result: JourneyResult, service_url: str) -> str:
    if result.success:
        return f"OK: synthetic order at {service_url} succeeded in {result.duration:.3f}s"
    detail = f" ({result.detail})" if result.detail else ""
    return (
        f"FAIL: {result.failed_step} step, {result.reason}{detail}, "
        f"at {service_url} after {result.duration:.3f}s"
    )


def render_text(result: JourneyResult, service_url: str) -> str:
    """A step table, then the summary. A journey that failed at its first step (the service is
    down) is the summary line alone: a table of one row would only repeat it."""
    lines = []
    if len(result.steps) > 1:
        ran = {step.name: step for step in result.steps}
        lines.append(f"{'STEP':<11} {'RESULT':<7} {'STATUS':<7} {'SECONDS':>8}  DETAIL")
        for name in STEPS:
            step = ran.get(name)
            if step is None:
                lines.append(f"{name:<11} {'-':<7} {'-':<7} {'-':>8}  not run")
                continue
            outcome = "ok" if step.ok else "FAIL"
            detail = f"{step.reason}: {step.detail}" if step.reason else ""
            status = str(step.status) if step.status is not None else "-"
            lines.append(f"{name:<11} {outcome:<7} {status:<7} {step.duration:>8.3f}  {detail}".rstrip())
    lines.append(summary_line(result, service_url))
    if result.chaos_link is not None:
        lines.append(f"chaos link ({result.chaos_link.key}): {result.chaos_link.redacted}")
    if result.target_version and len(result.steps) > 1:
        lines.append(f"service version: {result.target_version}")
    if result.factory_url and len(result.steps) > 1:
        lines.append(f"factory: {result.factory_url} ({FACTORY_SOURCES[result.factory_source or '']})")
    return "\n".join(lines)


FACTORY_SOURCES = {
    "configured": "configured: --factory-url or the module's factory_url",
    "service": "named by the service at GET /api/docs",
    "default": "the public factory: the service does not name one at GET /api/docs",
    "": "unknown",
}


def render_json(result: JourneyResult, service_url: str, **extra) -> str:
    """One JSON document: the journey, and whatever ``extra`` adds (``once --recover``'s
    recovery)."""
    return json.dumps({"service_url": service_url, **result.to_dict(), **extra}, indent=2)


def recovery_json(incident, record: str | None) -> dict:
    """What ``once --recover`` did, for ``--json``; links redacted."""
    return {
        "incident": incident.id,
        "status": incident.status,
        "chaos": incident.chaos_mode,
        "attempts": [{key: attempt.get(key) for key in ("result", "called", "link", "host",
                                                        "detail")}
                     for attempt in incident.attempts],
        "verified": incident.status == "resolved",
        "time_to_recover_seconds": None if incident.duration is None
        else round(incident.duration, 3),
        "record": record,
    }


def render_recovery(incident, incident_dir: str | None, record: str | None = None) -> str:
    """What ``once --recover`` did, in a few lines; links redacted."""
    lines = []
    if not incident.attempts:
        lines.append("recovery: no chaos link in the answer, nothing to call "
                     f"(observed: {incident.chaos_mode})")
    for attempt in incident.attempts:
        verb = "called" if attempt["called"] else "did not call"
        lines.append(f"recovery: {verb} {attempt['link']} -> {attempt['result']}"
                     + (f" ({attempt['detail']})" if attempt["detail"] else ""))
    if incident.status == "resolved":
        lines.append(f"recovery: verified, a fresh synthetic order succeeded; "
                     f"time to recover {incident.duration:.1f}s")
    else:
        lines.append("recovery: NOT resolved, a human must look (docs/runbook.md)")
    if record:
        lines.append(f"incident record: {record}")
    elif incident_dir:
        lines.append(f"incident record: NOT written in {incident_dir} (see the error above)")
    return "\n".join(lines)


def render_probe_debug(answer, metrics_text: str) -> str:
    """``/probe?debug=true``: the journey as ``once`` prints it, the module (password hidden)
    and the metrics the same request without ``debug`` answers. Links are redacted."""
    how = {
        "journey": "a new journey",
        "cached": f"the last journey again, {answer.age:.1f}s old (within min_interval "
                  f"{answer.module.min_interval:g}s)",
        "joined": "the journey that was already running for this target",
    }[answer.outcome]
    return "\n".join([
        f"target: {answer.target}",
        f"module: {answer.module.describe()}",
        f"answer: {how}",
        "",
        render_text(answer.result, answer.target),
        "",
        "metrics:",
        metrics_text.rstrip("\n"),
        "",
    ])
