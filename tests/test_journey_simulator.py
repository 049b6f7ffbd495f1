"""The probe judges each chaos mode against the simulator, over real HTTP, with the documented
step and reason."""

from __future__ import annotations

import pytest

from exporter.config import ProbeConfig
from exporter.journey import run_journey
from exporter.simulator import LINK_FORMS, LINK_KEYS

from conftest import set_chaos


def config_for(sim, **overrides) -> ProbeConfig:
    return ProbeConfig(service_url=sim.service_url, factory_url=sim.factory_url, timeout=5,
                       order_timeout=5, slow_threshold=0.3, **overrides)


@pytest.mark.parametrize("mode,step,reason,status", [
    ("fail", "order", "factory_error", 500),
    ("throttle", "order", "slow", 200),
    ("badjwt", "verify", "bad_jwt", 403),
])
def test_each_factory_chaos_mode(simulator, mode, step, reason, status):
    assert run_journey(config_for(simulator)).success
    set_chaos(simulator, mode)
    result = run_journey(config_for(simulator))
    assert (result.success, result.failed_step, result.reason, result.status) == (False, step, reason, status)
    assert result.chaos_link is not None and result.chaos_link.key == "followLinkToEndChaos"
    assert [s.name for s in result.steps][-1] == "logout" and result.steps[-1].ok


def test_throttle_under_the_slow_threshold_is_chaos_link(make_simulator):
    sim = make_simulator(throttle_delay=0.05)
    set_chaos(sim, "throttle")
    result = run_journey(config_for(sim))
    assert (result.failed_step, result.reason) == ("order", "chaos_link")


def test_the_services_chaos_monkey(simulator):
    simulator.service.monkey = True  # as PUT /api/order/chaos/true does (contract-tested)
    seen = set()
    for _ in range(40):
        result = run_journey(config_for(simulator))
        seen.add((result.success, result.failed_step, result.reason, result.status))
        if len(seen) == 2:
            break
    assert seen == {(True, None, None, 200), (False, "order", "http_error", 500)}


@pytest.mark.parametrize("link_key", list(LINK_KEYS))
@pytest.mark.parametrize("link_form", LINK_FORMS)
def test_every_fork_age_and_link_form_is_seen(make_simulator, link_key, link_form):
    sim = make_simulator(link_key=link_key, link_form=link_form, franchise_shape="old")
    set_chaos(sim, "fail")
    result = run_journey(config_for(sim))
    assert (result.failed_step, result.reason) == ("order", "factory_error")
    assert result.chaos_link.key == LINK_KEYS[link_key][1]
    assert ("/api/report?" in result.chaos_link.reveal()) == (link_form == "legacy")
