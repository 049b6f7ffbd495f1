"""The postmortem draft of an incident, in the sections of the course's incident reports:
Summary, Detection, Impact, Timeline, Response, Root cause, Resolution, Prevention and Action
items. One function per section, each drawn from the record alone.

Prevention and action items are drawn only from what the record shows happened (a refused
link, a limit the sidecar hit, a certificate the probe did not trust, a throttle the slow
threshold missed...), never invented: when nothing calls for action the draft says so.

Severity, by how long the failure lasted and the share of the synthetic orders seen that failed
(stated here and in docs/runbook.md, "Postmortem drafts"):

    SEV1  not ended by a verified good order (abandoned), or lasted 10 min or more: the time
          after which PizzaRecoveryFailing pages a human
    SEV2  lasted 1 min or more (PizzaSyntheticOrderFailing has paged by then) with at least
          half of the synthetic orders seen failing
    SEV3  anything shorter or milder: healed before a page mattered, or most orders were good

An open incident is graded on its duration so far and marked provisional. A failed order is one
the probe judged failed: a throttled order that was served after 32 s counts.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from .incident import ABANDONED, LINK_MODES, OPEN, RESOLVED, Incident, impact, utc
from .timing import since

SEV1_SECONDS = 600.0  # PizzaRecoveryFailing's incident_too_long
SEV2_SECONDS = 60.0  # PizzaSyntheticOrderFailing fires within about a minute
SEV2_SHARE = 0.5
SLOW_ORDER_SECONDS = 5.0  # PizzaSyntheticOrderSlow's threshold; a healthy order takes < 1 s
RUNBOOK = "docs/runbook.md"
ORDER_FAILING = f"{RUNBOOK}#pizzasyntheticorderfailing"
RECOVERY_FAILING = f"{RUNBOOK}#pizzarecoveryfailing"
DRAFTS = f"{RUNBOOK}#postmortem-drafts"
# recovery.LinkPolicy.refusal's words for a host off the allow-list (tests tie the two)
_OFF_ALLOW_LIST = re.compile(r"host '([a-z0-9.:\[\]-]+)' is not on the allow-list")


# --- times: exporter/timing.py's one definition, as the record holds it (``incident.times``) ---

def elapsed(incident: Incident) -> float:
    """How long the failure lasted, or has lasted so far (the last thing recorded)."""
    recovered = incident.times.time_to_recover
    if recovered is not None:
        return recovered
    last = max([incident.opened_at, *(at for at, _ in incident.timeline if at is not None),
                *(a["at"] for a in incident.attempts if isinstance(a.get("at"), (int, float)))])
    return since(incident.times.started_at, last) or 0.0


def seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


# --- severity and the share of failed orders ---------------------------------------------------

def severity(incident: Incident) -> tuple[str, str]:
    """(SEV1/SEV2/SEV3, the rule that gave it), by the rules in the module's docstring."""
    lasted, share = elapsed(incident), incident.failed_share
    if incident.status == ABANDONED:
        return "SEV1", "not ended by a verified good order"
    if lasted >= SEV1_SECONDS:
        return "SEV1", "lasted 10 min or more"
    if lasted >= SEV2_SECONDS and share is not None and share >= SEV2_SHARE:
        return "SEV2", "lasted 1 min or more, half or more of the orders seen failed"
    if lasted < SEV2_SECONDS:
        return "SEV3", "lasted under 1 min"
    if share is None:
        return "SEV3", "no synthetic order was seen failing"
    return "SEV3", "under half of the orders seen failed"


def share_sentence(incident: Incident) -> str:
    if incident.orders_seen == 0:
        return "no synthetic order was seen failing (the incident was opened by an alert)"
    return (f"{incident.failed_orders} of the {incident.orders_seen} synthetic orders seen "
            f"while it lasted failed ({incident.failed_share:.0%})")


def reasons_text(incident: Incident) -> str:
    return ", ".join(f"{key} x{count}" for key, count in
                     sorted(incident.reasons.items(), key=lambda kv: (-kv[1], kv[0])))


# --- prevention and action items, drawn from what happened -------------------------------------

@dataclasses.dataclass(frozen=True)
class Finding:
    """Something the record shows: what would prevent or shorten it next time, and what a
    person should do now. Either may be empty."""

    prevention: str = ""
    action: str = ""


def findings(incident: Incident) -> list[Finding]:
    found: list[Finding] = []
    for rule in RULES:
        found += rule(incident)
    return found


def _throttle(incident: Incident) -> list[Finding]:
    slowest = incident.slowest_order_seconds
    if incident.chaos_mode == "throttle" and slowest:
        return [Finding(prevention=(
            f"Throttled orders were held up to {slowest:.1f} s and the chaos link comes only "
            "with the held answer, so no probe setting heals a throttle sooner than one held "
            "order. Keep --order-timeout above the hold (45 s by default): a shorter one ends "
            "the order before its link arrives, and nothing heals it."))]
    if (incident.chaos_mode == "chaos link on a good order" and slowest
            and slowest >= SLOW_ORDER_SECONDS):
        return [Finding(
            prevention=(f"Orders that carried the chaos link took up to {slowest:.1f} s, yet "
                        "failed as chaos_link, not slow: --slow-threshold is above "
                        f"{slowest:.1f} s, so the factory's throttle went unnamed in the metrics "
                        "and in this record."),
            action=(f"Lower --slow-threshold (PIZZA_PROBE_SLOW_THRESHOLD) below {slowest:.1f} s, "
                    f"for example to {SLOW_ORDER_SECONDS:g}s, where PizzaSyntheticOrderSlow "
                    "fires."))]
    return []


def _refusals(incident: Incident) -> list[Finding]:
    found, hosts, others = [], [], []
    for attempt in incident.attempts:
        if attempt.get("result") != "refused":
            continue
        match = _OFF_ALLOW_LIST.fullmatch(str(attempt.get("detail") or ""))
        if match and match.group(1) not in hosts:
            hosts.append(match.group(1))
        elif not match and attempt.get("detail") not in others:
            others.append(attempt.get("detail"))
    for host in hosts:
        found.append(Finding(
            prevention=(f"A recovery link to {host} was refused: {host} is not on the "
                        "allow-list. If it is your factory, allowing it lets the sidecar heal "
                        "such incidents by itself."),
            action=(f"Check whether {host} is your pizza factory. If it is, give the sidecar "
                    f"--allow-host {host} (PIZZA_RECOVERY_ALLOW_HOSTS); if it is not, someone "
                    f"may be injecting links: do not call it ({RECOVERY_FAILING})."),
        ))
    for detail in others:
        found.append(Finding(action=(f"A recovery link was refused ({detail}): look at it as "
                                     f"{RECOVERY_FAILING} says before calling anything by hand.")))
    return found


def _answers(incident: Incident) -> list[Finding]:
    results = [a.get("result") for a in incident.attempts]
    found = []
    if "unresolved" in results:
        found.append(Finding(action=("The factory did not accept the fix code (unresolved): get "
                                     "a fresh link and call it by hand, as "
                                     f"{RECOVERY_FAILING} says.")))
    errors = list(dict.fromkeys(a.get("detail") for a in incident.attempts
                                if a.get("result") == "error"))
    if errors:
        found.append(Finding(action=(f"The link call failed ({'; '.join(map(str, errors))}): "
                                     "check the network and TLS from the sidecar to the factory "
                                     f"({RECOVERY_FAILING}).")))
    if "dry_run" in results:
        found.append(Finding(
            prevention="The sidecar ran with --dry-run: it would have called the link, and did not.",
            action="Run the sidecar without --dry-run if it should end chaos by itself."))
    return found


_LIMIT_ACTIONS = {
    "max_attempts": ("The sidecar made the most link calls an incident may have (--max-attempts) "
                     f"and the shop still failed: a human must look ({RECOVERY_FAILING})."),
    "hourly_limit": ("The hourly limit of link calls (--max-attempts-per-hour) stopped the "
                     "sidecar: find out why links were called so often, and end this chaos by "
                     f"hand ({RECOVERY_FAILING})."),
    "kill_switch": ("The kill switch file was present, so no link was called: remove it when the "
                    f"sidecar should heal again ({RECOVERY_FAILING})."),
    "spent_link": ("The chaos link had been answered or refused before, and a link is never "
                   "called twice: "
                   f"end the chaos by hand with a fresh link ({ORDER_FAILING}, manual recovery)."),
}


def _limits(incident: Incident) -> list[Finding]:
    return [Finding(action=_LIMIT_ACTIONS[limit])
            for limit in dict.fromkeys(incident.limits) if limit in _LIMIT_ACTIONS]


def _abandoned(incident: Incident) -> list[Finding]:
    if incident.status != ABANDONED:
        return []
    return [Finding(action=("The sidecar stopped (killed, crashed or restarted) while this "
                            "incident was open, and nothing verified the shop: find out why from "
                            "its logs, and check the incident that followed "
                            f"({ORDER_FAILING}, step 4)."))]


def _probe_side(incident: Incident) -> list[Finding]:
    found = []
    tls = sorted(key for key in incident.reasons if key.endswith("/tls_error"))
    if tls:
        found.append(Finding(
            prevention=(f"The probe did not trust a certificate ({', '.join(tls)}): the shop may "
                        "have been fine."),
            action=("Give the probe the CA that signs the service's or the factory's certificate "
                    f"with --ca-file (PIZZA_PROBE_CA_FILE) or REQUESTS_CA_BUNDLE ({ORDER_FAILING})."
                    )))
    linkless = sorted(key for key in incident.reasons if not key.endswith("/tls_error"))
    if (incident.chaos_mode not in LINK_MODES and not incident.attempts and linkless):
        found.append(Finding(action=(
            f"The failures ({', '.join(linkless)}) carried no chaos link, so the sidecar had "
            f"nothing to call: find the cause as {ORDER_FAILING} says, step 1.")))
    return found


RULES: tuple[Callable[[Incident], list[Finding]], ...] = (
    _throttle, _refusals, _answers, _limits, _abandoned, _probe_side)


# --- the sections --------------------------------------------------------------------------------

def summary(incident: Incident) -> list[str]:
    level, rule = severity(incident)
    provisional = ", provisional: still open" if incident.status == OPEN else ""
    end = utc(incident.first_good_order_at) or ("now" if incident.status == OPEN else "unknown")
    called = sum(1 for a in incident.attempts if a.get("called"))
    response = ("No recovery link was called." if not called
                else "The sidecar called the recovery link once." if called == 1
                else f"The sidecar called the recovery link {called} times.")
    lasted = seconds(elapsed(incident)) + (
        "" if incident.times.time_to_recover is not None else " so far" if incident.status == OPEN
        else " or more")
    return [f"**{level}** ({rule}{provisional}). From {utc(incident.times.started_at)} to {end} "
            f"({lasted}), {share_sentence(incident)}"
            + (f", at {reasons_text(incident)}" if incident.reasons else "")
            + f". Cause as observed: {incident.chaos_mode or 'unknown'}. {response} "
            f"Status: {incident.status}"
            + (f", {incident.resolution}." if incident.resolution else ".")]


def detection(incident: Incident) -> list[str]:
    by = ("synthetic order probe" if incident.detected_by == "probe"
          else "alert PizzaSyntheticOrderFailing")
    detect = incident.times.time_to_detect
    text = f"Detected by the {by} at {utc(incident.opened_at)}"
    if detect is not None:
        text += f", {seconds(detect)} after the first failed order started"
        if incident.chaos_mode == "throttle":
            text += " (a throttled order fails only when its held answer comes back)"
    text += "."
    if incident.alert_fired_at:
        text += f" The alert fired at {utc(incident.alert_fired_at)}."
    return [text]


def impact_section(incident: Incident) -> list[str]:
    recovered = incident.times.time_to_recover
    duration = (seconds(recovered) if recovered is not None
                else "still open" if incident.status == OPEN else "unknown")
    return [f"{incident.failed_orders} failed synthetic order(s): {share_sentence(incident)}; "
            f"duration {duration}. " + impact(incident.chaos_mode, incident.slowest_order_seconds)]


def timeline(incident: Incident) -> list[str]:
    return [f"- {utc(at)}: {event}" for at, event in incident.timeline] or ["- Nothing recorded."]


def response(incident: Incident) -> list[str]:
    return [f"- {utc(a.get('at'))}: {'called' if a.get('called') else 'did not call'} the "
            f"recovery link on {a.get('host')} -> {a.get('result')}"
            + (f" ({a['detail']})" if a.get("detail") else "") for a in incident.attempts] \
        or ["- No recovery link was called."]


def root_cause(incident: Incident) -> list[str]:
    lines = [f"The pizza factory's chaos as observed by the probe: {incident.chaos_mode or 'unknown'}."]
    if incident.reasons:
        lines[0] += f" Failed orders by step and reason: {reasons_text(incident)}."
    return lines


def resolution(incident: Incident) -> list[str]:
    if incident.status == RESOLVED and incident.link_answer:
        return [f"The recovery link answered {incident.link_answer!r}; a fresh synthetic order "
                f"succeeded at {utc(incident.first_good_order_at)}."]
    return [incident.resolution or f"Not resolved yet: a human must look (see {RUNBOOK})."]


def prevention(incident: Incident) -> list[str]:
    found = findings(incident)
    items = [f"- {f.prevention}" for f in found if f.prevention]
    if items:
        return items
    if any(f.action for f in found):
        return ["No change to pizza-probe follows from this record: see the action items."]
    if incident.status == OPEN:
        return ["Nothing recorded so far calls for a change; this draft is rewritten as the "
                "incident goes on."]
    chaos = (" The factory's chaos itself is injected on purpose: nothing here prevents it."
             if incident.chaos_mode in LINK_MODES else "")
    return ["Nothing in this incident calls for a change: no link was refused, no limit or "
            "error stood in the sidecar's way and no certificate was distrusted." + chaos]


def action_items(incident: Incident) -> list[str]:
    items = [f"- [ ] {f.action}" for f in findings(incident) if f.action]
    return items or ["None: nothing in this incident calls for action."]


SECTIONS: tuple[tuple[str, Callable[[Incident], list[str]]], ...] = (
    ("Summary", summary),
    ("Detection", detection),
    ("Impact", impact_section),
    ("Timeline (UTC)", timeline),
    ("Response", response),
    ("Root cause", root_cause),
    ("Resolution", resolution),
    ("Prevention", prevention),
    ("Action items", action_items),
)


def render(incident: Incident) -> str:
    lines = [f"# Incident {incident.id}: JWT Pizza synthetic orders failing", "",
             f"_A draft by pizza-probe from the incident record: severity rules and where the "
             f"items come from are in {DRAFTS}._", ""]
    for heading, section in SECTIONS:
        lines += [f"## {heading}", *section(incident), ""]
    return "\n".join(lines)
