"""The postmortem draft: the course's sections in order, a summary with severity and the share
of failed orders, and prevention and action items drawn only from what happened. Incidents are
made by the real sidecar engine (FakeClock, real link policy), as the sidecar makes them."""

from __future__ import annotations

import json
import os
import re

import pytest
from prometheus_client import CollectorRegistry

from exporter import postmortem
from exporter.config import ProbeConfig
from exporter.handoff import ProbeReport
from exporter.incident import Incident
from exporter.postmortem import render
from exporter.records import IncidentStore
from exporter.recovery import LinkOutcome, LinkPolicy
from exporter.redact import RecoveryLink
from exporter.result import JourneyResult, StepResult
from exporter.sidecar import RecoveryMetrics, Sidecar, SidecarOptions

from conftest import FakeClock

KEY = "0123456789abcdef0123456789abcdef"
CODE = "fedcba9876543210fedcba9876543210"
FACTORY = "https://pizza-factory.cs329.click"
LINK = f"{FACTORY}/api/support/{KEY}/report/{CODE}"
PASSWORD = "probe-password-1"
HEADINGS = ["Summary", "Detection", "Impact", "Timeline (UTC)", "Response", "Root cause",
            "Resolution", "Prevention", "Action items"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def section(markdown: str, heading: str) -> str:
    return markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0].strip()


class Shop:
    """The sidecar engine with a fake clock, a journey that succeeds and a link caller that
    answers ``answer``; ``fail()`` hands it one failed journey report."""

    def __init__(self, tmp_path, *, answer: str = "resolved", journey_ok: bool = True,
                 extra_hosts=(), **options) -> None:
        self.clock = FakeClock()
        self.calls: list[str] = []
        self.answer = answer
        self.journey_ok = journey_ok
        config = ProbeConfig(service_url="http://127.0.0.1:9", factory_url=FACTORY,
                             password=PASSWORD)
        self.store = IncidentStore(str(tmp_path))
        self.sidecar = Sidecar(config, LinkPolicy.default(FACTORY, list(extra_hosts)),
                               SidecarOptions(**{"cooldown": 0, **options}),
                               RecoveryMetrics(CollectorRegistry()), self.store,
                               clock=self.clock, journey=self.journey, link_caller=self.call)
        self.seq = 0

    def journey(self, config) -> JourneyResult:
        self.clock.now += 1
        step = StepResult("order", self.journey_ok, 0.2, 200 if self.journey_ok else 500,
                          *(() if self.journey_ok else ("factory_error", "500")))
        return JourneyResult(self.journey_ok, self.clock.time() - 1, 0.2, (step,),
                             failed_step=None if self.journey_ok else "order",
                             reason=None if self.journey_ok else "factory_error")

    def call(self, link, policy, **kwargs) -> LinkOutcome:
        self.calls.append(link.reveal())
        return LinkOutcome(self.answer, {"resolved": "Problem resolved. Pizza is back on the menu!",
                                         "unresolved": "Problem unresolved"}.get(self.answer, ""),
                           200)

    def fail(self, *, reason: str = "factory_error", step: str = "order", link: str | None = LINK,
             order_seconds: float | None = 0.2, every: float = 15.0) -> None:
        self.seq += 1
        self.sidecar.step(("report", ProbeReport(
            self.seq, False, self.clock.time(), step, reason, "detail",
            RecoveryLink(link, "followLinkToEndChaos") if link else None,
            None, order_seconds)))
        self.clock.now += every

    def good(self) -> None:
        self.seq += 1
        self.sidecar.step(("report", ProbeReport(self.seq, True, self.clock.time())))

    @property
    def incident(self) -> Incident:
        current, closed = self.sidecar.snapshot()
        return current or closed[-1]

    def draft(self) -> str:
        return render(self.incident)


def hold_the_calls(shop: Shop, failures: int, **fail) -> None:
    """``failures`` failed reports while the link may not be called (a dry run would call
    nothing either, but records an attempt): the first opens the incident."""
    for _ in range(failures):
        shop.fail(**fail)


# --- sections and the summary ----------------------------------------------------------------

def test_a_healed_fail_incident_has_every_section_in_order_and_invents_nothing(tmp_path):
    shop = Shop(tmp_path)
    shop.fail()  # the link is called at once, the verifying order succeeds
    incident = shop.incident
    assert incident.status == "resolved" and shop.calls == [LINK]
    markdown = (tmp_path / f"{incident.id}.md").read_text()  # as the sidecar wrote it
    assert re.findall(r"^## (.+)$", markdown, re.M) == HEADINGS
    # nothing called for action: said, not invented (no flag, no runbook step, no checkbox)
    assert section(markdown, "Prevention").startswith("Nothing in this incident calls for a change")
    assert section(markdown, "Action items") == "None: nothing in this incident calls for action."
    assert "--" not in section(markdown, "Prevention") + section(markdown, "Action items")
    assert "[ ]" not in markdown


def test_the_summary_states_severity_and_the_share_of_failed_orders(tmp_path):
    shop = Shop(tmp_path, kill_switch_file=str(tmp_path / "kill"))
    (tmp_path / "kill").write_text("")
    hold_the_calls(shop, 5)  # five failed orders, 15 s apart: 75 s of failure
    os.unlink(tmp_path / "kill")
    shop.sidecar.step(None)
    incident = shop.incident
    assert (incident.failed_orders, incident.good_orders, incident.orders_seen) == (5, 1, 6)
    assert incident.reasons == {"order/factory_error": 5}
    summary = section(shop.draft(), "Summary")
    assert summary.count("\n") == 0, "one paragraph"
    assert summary.startswith("**SEV2** (lasted 1 min or more, half or more of the orders seen "
                              "failed). From 2023-11-14T22:30:00Z to 2023-11-14T22:31:15Z "
                              "(1 min 15 s), 5 of the 6 synthetic orders seen while it lasted "
                              "failed (83%), at order/factory_error x5."), summary
    assert "at order/factory_error x5" in summary and "Status: resolved" in summary
    # and in the record, for whoever reads the JSON
    record = json.loads((tmp_path / f"{incident.id}.json").read_text())
    assert (record["failed_orders"], record["good_orders"]) == (5, 1)
    assert record["reasons"] == {"order/factory_error": 5}


def test_a_hand_off_with_steps_and_reasons_of_its_own_is_counted_bounded_and_unquoted(tmp_path):
    # The hand-off is read over the network: its failed_step and reason are any strings. Each
    # became a key of the record's reasons and a phrase of the draft, verbatim and uncut, so a
    # hostile exporter could grow the record without end and write what it liked, a secret of
    # the sidecar's included, into the draft.
    shop = Shop(tmp_path, dry_run=True)
    for number in range(200):
        shop.fail(step=f"step-{number}", reason=f"{PASSWORD} {number} " + "x" * 5000)
    shop.fail()  # one of ours
    incident = shop.incident
    assert incident.reasons == {"unknown/unknown": 200, "order/factory_error": 1}
    draft = shop.draft()
    record = (tmp_path / f"{incident.id}.json").read_text()
    assert PASSWORD not in draft + record
    assert len(record) < 100_000 and "x" * 100 not in draft
    shop = Shop(tmp_path, dry_run=True)  # and as the root cause, without a link
    shop.fail(step="order<script>", reason=f"{PASSWORD}", link=None)
    assert shop.incident.chaos_mode == "unknown unknown"
    assert PASSWORD not in shop.draft()


def test_a_good_order_from_the_probe_counts_as_seen(tmp_path):
    shop = Shop(tmp_path, dry_run=True)  # nothing heals: the chaos ends by itself
    shop.fail()
    shop.fail()
    shop.good()
    assert shop.incident.status == "resolved"
    assert "2 of the 3 synthetic orders seen while it lasted failed (67%)" in shop.draft()


@pytest.mark.parametrize("lasted, failed, good, status, level", [
    (30, 2, 1, "resolved", "SEV3"),
    (90, 4, 1, "resolved", "SEV2"),
    (90, 0, 1, "resolved", "SEV3"),  # an alert the confirming order did not bear out
    (700, 40, 1, "resolved", "SEV1"),
    (20, 1, 0, "abandoned", "SEV1"),
    (120, 8, 0, "open", "SEV2"),
])
def test_severity_by_duration_and_failed_share(lasted, failed, good, status, level):
    incident = Incident(id="incident-x", opened_at=1000.0, detected_by="probe",
                        first_failure_at=1000.0, failed_orders=failed, good_orders=good,
                        status=status, chaos_mode="fail")
    if status == "resolved":
        incident.first_good_order_at = 1000.0 + lasted
    else:
        incident.note(1000.0 + lasted, "still failing")
    assert postmortem.severity(incident)[0] == level
    summary = section(render(incident), "Summary")
    assert summary.startswith(f"**{level}** (")
    assert (", provisional: still open)" in summary) == (status == "open")


# --- prevention and action items, from what happened ------------------------------------------

def test_a_throttle_says_what_bounds_its_healing_and_asks_nothing(tmp_path):
    shop = Shop(tmp_path)
    shop.fail(reason="slow", order_seconds=32.05, every=33)
    incident = shop.incident
    assert incident.status == "resolved" and incident.chaos_mode == "throttle"
    markdown = shop.draft()
    prevention = section(markdown, "Prevention")
    assert "held up to 32.0 s" in prevention and "--order-timeout" in prevention
    assert "--slow-threshold" not in markdown  # it named the throttle: nothing to lower
    assert section(markdown, "Action items").startswith("None")


def test_a_throttle_the_slow_threshold_missed_asks_for_a_lower_one(tmp_path):
    shop = Shop(tmp_path)
    shop.fail(reason="chaos_link", order_seconds=32.05, every=33)  # threshold above 32 s
    markdown = shop.draft()
    assert "failed as chaos_link, not slow" in section(markdown, "Prevention")
    (item,) = section(markdown, "Action items").splitlines()
    assert item.startswith("- [ ] Lower --slow-threshold (PIZZA_PROBE_SLOW_THRESHOLD) below 32.0 s")


def test_a_quick_chaos_link_is_no_throttle(tmp_path):
    shop = Shop(tmp_path)
    shop.fail(reason="chaos_link", order_seconds=0.3)
    assert "--slow-threshold" not in shop.draft()


def test_a_link_off_the_allow_list_asks_for_allow_host_and_shows_no_secret(tmp_path):
    moved = f"https://factory.moved.example/api/support/{KEY}/report/{CODE}"
    shop = Shop(tmp_path, dry_run=True)
    shop.fail(link=moved)
    incident = shop.incident
    assert [a["result"] for a in incident.attempts] == ["refused"] and shop.calls == []
    markdown = shop.draft()
    assert "factory.moved.example is not on the allow-list" in section(markdown, "Prevention")
    (item,) = section(markdown, "Action items").splitlines()
    assert "--allow-host factory.moved.example (PIZZA_RECOVERY_ALLOW_HOSTS)" in item
    assert "docs/runbook.md#pizzarecoveryfailing" in item
    # the link's key and code and the probe's password appear in neither file
    for path in tmp_path.iterdir():
        text = path.read_text()
        assert KEY not in text and CODE not in text and PASSWORD not in text, path.name
    assert "api/support/***/report/***" in (tmp_path / f"{incident.id}.json").read_text()


def test_an_allowed_host_is_not_suggested(tmp_path):
    moved = f"https://factory.moved.example/api/support/{KEY}/report/{CODE}"
    shop = Shop(tmp_path, extra_hosts=["factory.moved.example"])
    shop.fail(link=moved)
    assert shop.calls == [moved] and "--allow-host" not in shop.draft()


@pytest.mark.parametrize("limit, says", [
    ("hourly_limit", "--max-attempts-per-hour"),
    ("kill_switch", "kill switch file was present"),
    ("spent_link", "answered or refused before"),
])
def test_a_limit_that_left_the_incident_to_a_human_points_at_the_runbook(tmp_path, limit, says):
    options = {"hourly_limit": {"max_attempts_per_hour": 0},
               "kill_switch": {"kill_switch_file": str(tmp_path / "kill")}}.get(limit, {})
    (tmp_path / "kill").write_text("")
    shop = Shop(tmp_path / "records", **options)
    if limit == "spent_link":  # healed once with this link; the same link comes back later
        shop.fail()
        assert shop.incident.status == "resolved"
        shop.clock.now += 600
    shop.fail()
    shop.fail()
    incident = shop.incident
    assert incident.status == "open" and incident.limits == [limit]
    (item,) = section(shop.draft(), "Action items").splitlines()
    assert says in item and "docs/runbook.md#" in item


def test_an_abandoned_incident_points_at_the_runbook(tmp_path):
    shop = Shop(tmp_path, dry_run=True)
    shop.fail(link=None)  # nothing to call: open until the sidecar stops
    IncidentStore(str(tmp_path)).reconcile(shop.clock.time())  # the next sidecar starts
    record = json.loads((tmp_path / f"{shop.incident.id}.json").read_text())
    assert record["status"] == "abandoned"
    markdown = (tmp_path / f"{shop.incident.id}.md").read_text()
    assert section(markdown, "Summary").startswith("**SEV1** (not ended by a verified good order)")
    items = section(markdown, "Action items")
    assert "The sidecar stopped (killed, crashed or restarted)" in items
    assert "carried no chaos link" in items and "order/factory_error" in items


def test_a_certificate_the_probe_did_not_trust_asks_for_ca_file(tmp_path):
    shop = Shop(tmp_path)
    shop.fail(step="verify", reason="tls_error", link=None)
    items = section(shop.draft(), "Action items")
    assert "--ca-file (PIZZA_PROBE_CA_FILE)" in items
    assert "carried no chaos link" not in items  # the certificate is the whole story


def test_an_unresolved_answer_asks_for_a_fresh_link_by_hand(tmp_path):
    shop = Shop(tmp_path, answer="unresolved")
    shop.fail()
    (item,) = section(shop.draft(), "Action items").splitlines()
    assert "did not accept the fix code" in item


def test_every_runbook_section_a_draft_names_exists():
    with open(os.path.join(REPO, "docs", "runbook.md")) as handle:
        anchors = {re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower().replace(" ", "-"))
                   for line in handle if line.startswith("## ")}
    named = {value.split("#", 1)[1] for value in vars(postmortem).values()
             if isinstance(value, str) and value.startswith("docs/runbook.md#")}
    assert named == {"pizzasyntheticorderfailing", "pizzarecoveryfailing", "postmortem-drafts"}
    assert named <= anchors


# --- records -----------------------------------------------------------------------------------

def test_a_record_written_before_the_counts_reads_as_one_good_order():
    old = {"id": "incident-20261129T101500Z-0000abcd", "opened_at": "2026-11-29T10:15:00Z",
           "detected_by": "probe", "first_failure_at": "2026-11-29T10:15:00Z",
           "first_good_order_at": "2026-11-29T10:15:40Z", "failed_orders": 3,
           "status": "resolved", "timeline": [], "attempts": []}
    incident = Incident.from_json(old)
    assert (incident.good_orders, incident.reasons, incident.limits) == (1, {}, [])
    assert "3 of the 4 synthetic orders seen" in render(incident)


@pytest.mark.parametrize("junk", [{"reasons": ["x"]}, {"reasons": {"a/b": -1}},
                                  {"limits": "hourly_limit"}, {"good_orders": True},
                                  {"attempts": ["x"]}])
def test_a_record_with_junk_counts_is_not_ours(junk):
    record = {"id": "incident-x", "opened_at": "2026-11-29T10:15:00Z", "detected_by": "probe",
              **junk}
    with pytest.raises(ValueError):
        Incident.from_json(record)
