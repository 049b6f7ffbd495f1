"""Generate dashboards/pizza-probe.json, the Grafana dashboard users import, from code.

    python dashboards/generate.py               # rewrite dashboards/pizza-probe.json (make dashboards)
    python dashboards/generate.py --output -    # print it instead

Built with the Grafana Foundation SDK (grafana-foundation-sdk, pinned in setup.cfg's test extra),
whose typed builders are generated from Grafana's own schemas: a misspelt option fails here, not
in a browser. Not a runtime dependency: the exporter never imports this file.
tests/test_dashboard_code.py fails when the committed JSON differs from what this program makes,
so edit this file and run `make dashboards`; never edit the JSON by hand.

The dashboard is four rows, one question each: Is it up? Is it fast? What broke? Did it heal?
Journey panels filter on $instance and $target (serve --target; "All" also matches an exporter
with one target, which has no target label); sidecar panels filter on $sidecar.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import gauge, heatmap, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "pizza-probe.json")

# Imported, ${DS_PROMETHEUS} is filled in from __inputs; provisioned from a file, the data-source
# variable of the same name resolves it.
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${DS_PROMETHEUS}")
JOURNEY = 'instance=~"$instance", target=~"$target"'
SIDECAR = 'instance=~"$sidecar"'
BY_TARGET = "{{instance}} {{target}}"
QUANTILES = ((0.5, "p50", "A"), (0.95, "p95", "B"), (0.99, "p99", "C"))


# --- building blocks ---------------------------------------------------------------------------

def query(expr: str, legend: str, ref_id: str = "A", *, instant: bool = False, exemplar: bool = False,
          fmt: pm.PromQueryFormat = pm.PromQueryFormat.TIME_SERIES) -> prometheus.Dataquery:
    """One Prometheus query: instant (stat, gauge) or range (graphs); `exemplar` asks Prometheus
    for the exemplars of a histogram so the panel shows them as dots."""
    target = (prometheus.Dataquery().datasource(DATASOURCE).editor_mode(pm.QueryEditorMode.CODE).expr(expr)
              .format(fmt).legend_format(legend).ref_id(ref_id))
    target = target.instant() if instant else target.range()
    if exemplar:
        target = target.exemplar(True)
    return target


def grid(x: int, y: int, w: int, h: int) -> dm.GridPos:
    return dm.GridPos(x=x, y=y, w=w, h=h)


def steps(*pairs: tuple[float | None, str]) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=value, color=color) for value, color in pairs])


def value_map(*texts: tuple[str, str, str]) -> dm.ValueMap:
    """(value, text, colour) in order; the order is the mapping's index."""
    return dm.ValueMap(options={value: dm.ValueMappingResult(text=text, color=color, index=i)
                                for i, (value, text, color) in enumerate(texts)})


def nan_map(text: str) -> dm.SpecialValueMap:
    return dm.SpecialValueMap(options=dm.DashboardSpecialValueMapOptions(
        match=dm.SpecialValueMatch.NA_N, result=dm.ValueMappingResult(text=text, index=0)))


def fixed_colours(*pairs: tuple[str, str]) -> list[cogbuilder.Builder[dm.DashboardFieldConfigSourceOverrides]]:
    """Series overrides: series name -> fixed colour."""
    return [db.DashboardFieldConfigSourceOverrides()
            .matcher(dm.MatcherConfig(id_val="byName", options=name))
            .properties([dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": colour})])
            for name, colour in pairs]


def reduce_last() -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def stat_panel(panel_id: int, title: str, description: str, pos: dm.GridPos, *, unit: str,
               thresholds: db.ThresholdsConfig, mappings: list | None = None,
               decimals: int | None = None,
               color_mode: common.BigValueColorMode = common.BigValueColorMode.BACKGROUND,
               text_mode: common.BigValueTextMode = common.BigValueTextMode.AUTO) -> stat.Panel:
    panel = (stat.Panel().id(panel_id).title(title).description(description).datasource(DATASOURCE)
             .grid_pos(pos).unit(unit).mappings(mappings or []).thresholds(thresholds)
             .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
             .reduce_options(reduce_last()).color_mode(color_mode)
             .graph_mode(common.BigValueGraphMode.NONE).justify_mode(common.BigValueJustifyMode.AUTO)
             .orientation(common.VizOrientation.AUTO).text_mode(text_mode).wide_layout(True)
             .show_percent_change(False))
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def graph_panel(panel_id: int, title: str, description: str, pos: dm.GridPos, *, unit: str,
                bars: bool = False, thresholds: db.ThresholdsConfig | None = None,
                threshold_line: bool = False,
                legend: cb.VizLegendOptions | None = None) -> timeseries.Panel:
    """A time series: lines (latency, ratios) or stacked bars (counts per interval)."""
    return (timeseries.Panel().id(panel_id).title(title).description(description)
            .datasource(DATASOURCE).grid_pos(pos).unit(unit).min(0)
            .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
            .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
            .line_width(1).fill_opacity(80 if bars else 10)
            .gradient_mode(common.GraphGradientMode.NONE).show_points(common.VisibilityMode.NEVER)
            .span_nulls(False).line_interpolation(common.LineInterpolation.LINEAR).point_size(4)
            .bar_alignment(common.BarAlignment.CENTER).axis_placement(common.AxisPlacement.AUTO)
            .axis_label("").axis_border_show(False).axis_centered_zero(False)
            .axis_color_mode(common.AxisColorMode.TEXT).axis_soft_min(0)
            .scale_distribution(cb.ScaleDistributionConfig().type(common.ScaleDistribution.LINEAR))
            .stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL if bars else common.StackingMode.NONE)
                      .group("A"))
            .hide_from(cb.HideSeriesConfig().legend(False).tooltip(False).viz(False))
            .insert_nulls(False)
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.LINE if threshold_line else common.GraphThresholdsStyleMode.OFF))
            .mappings([]).thresholds(thresholds or steps((None, "green")))
            .legend(legend or cb.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                    .placement(common.LegendPlacement.BOTTOM).show_legend(True).calcs([]))
            .tooltip(cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)))


def row(panel_id: int, title: str, y: int) -> db.Row:
    return db.Row(title).id(panel_id).collapsed(False).datasource(DATASOURCE).grid_pos(grid(0, y, 24, 1))


def query_variable(name: str, label: str, description: str, expr: str) -> db.QueryVariable:
    """A multi-value query variable whose All matches any value (and no label at all)."""
    return (db.QueryVariable(name).label(label).description(description).datasource(DATASOURCE)
            .query(expr).refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).regex("")
            .sort(dm.VariableSort.ALPHABETICAL_ASC).hide(dm.VariableHide.DONT_HIDE)
            .include_all(True).all_value(".*").multi(True).options([]))


def plain(builder: cogbuilder.Builder) -> dict:
    """What a builder builds, as plain JSON values."""
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def sidecar_annotation(name: str, colour: str, expr: str, text: str) -> dict:
    """A Prometheus annotation. The SDK types the fields every annotation has; the Prometheus
    data source's own ones (step, title and text format, tag keys) are not in Grafana's
    dashboard schema, so they are added to the built query here."""
    query = (db.AnnotationQuery().name(name).datasource(DATASOURCE).enable(True).hide(False)
             .icon_color(colour).expr(expr))
    built = plain(query)
    built.update({"step": "15s", "titleFormat": name, "textFormat": text, "tagKeys": "instance",
                  "useValueForTime": False})
    return built


# --- the rows ----------------------------------------------------------------------------------

ROW_DESCRIPTIONS = {
    "Is it up?": "Does a synthetic pizza order succeed right now, and how much of the 99% order-success SLO is left?",
    "Is it fast?": "How long each step and the whole journey take; the factory's throttle shows as orders near 32 s.",
    "What broke?": "Which journeys failed, at which step and why, whether the factory handed out a chaos link, "
                   "and how fast the error budget burns.",
    "Did it heal?": "What the self-healing sidecar did: recovery attempts, incidents, time to recover and "
                    "whether it may act at all.",
}


def is_it_up() -> list:
    def orders(window: str, result: str = "") -> str:
        """Orders per exporter and target over a window, of one result or all."""
        selector = f'result="{result}", {JOURNEY}' if result else JOURNEY
        return f"sum by (instance, target) (increase(pizza_probe_orders_total{{{selector}}}[{window}]))"
    ratio = f'{orders("$__range", "success")}\n/ {orders("$__range")}'
    budget = f'clamp(\n  1 - (\n    {orders("30d", "failure")}\n    / {orders("30d")}\n  ) / 0.01,\n  0, 1\n)'
    return [
        row(1, "Is it up?", 0),
        stat_panel(2, "Probe status",
                   "Result of the last synthetic order journey (pizza_probe_success): OK or FAILING.",
                   grid(0, 1, 4, 6), unit="short", thresholds=steps((None, "red"), (1, "green")),
                   mappings=[value_map(("1", "OK", "green"), ("0", "FAILING", "red"))])
        .with_target(query(f"pizza_probe_success{{{JOURNEY}}}", BY_TARGET, instant=True)),
        stat_panel(3, "Order success ratio (range)",
                   "Share of synthetic orders that succeeded over the dashboard's time range (SLO: 99%).",
                   grid(4, 1, 5, 6), unit="percentunit", decimals=2, mappings=[nan_map("no orders")],
                   thresholds=steps((None, "red"), (0.95, "orange"), (0.99, "green")))
        .with_target(query(ratio, BY_TARGET, instant=True)),
        gauge.Panel().id(4).title("SLO error budget left (30 d)")
        .description("Share of the 30-day error budget (1% of orders may fail) still unspent; "
                     "0% means the SLO is breached.")
        .datasource(DATASOURCE).grid_pos(grid(9, 1, 5, 6)).unit("percentunit").decimals(1).min(0).max(1)
        .mappings([]).thresholds(steps((None, "red"), (0.25, "orange"), (0.5, "green")))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .reduce_options(reduce_last()).orientation(common.VizOrientation.AUTO)
        .show_threshold_labels(False).show_threshold_markers(True).min_viz_height(75).min_viz_width(75)
        .sizing(common.BarGaugeSizing.AUTO)
        .with_target(query(budget, BY_TARGET, instant=True)),
        stat_panel(5, "Time since the last good order",
                   "Seconds since the start of the last successful synthetic order; 'never' if none succeeded yet.",
                   grid(14, 1, 5, 6), unit="s", decimals=0,
                   thresholds=steps((None, "green"), (120, "orange"), (300, "red")),
                   mappings=[dm.RangeMap(options=dm.DashboardRangeMapOptions(
                       from_val=1000000000, to=None,
                       result=dm.ValueMappingResult(text="never", color="red", index=0)))])
        .with_target(query(f"time() - pizza_probe_last_success_timestamp_seconds{{{JOURNEY}}}", BY_TARGET,
                           instant=True)),
        stat_panel(6, "Consecutive failures", "Failed journeys in a row; PizzaSyntheticOrderFailing pages at 2.",
                   grid(19, 1, 5, 6), unit="short", decimals=0,
                   thresholds=steps((None, "green"), (1, "orange"), (2, "red")))
        .with_target(query(f"pizza_probe_consecutive_failures{{{JOURNEY}}}", BY_TARGET, instant=True)),
    ]


def is_it_fast() -> list:
    step_latency = graph_panel(
        8, "Step latency p50 / p95 / p99",
        "Latency percentiles of each journey step (health, login, menu, franchises, order, verify, logout).",
        grid(0, 8, 8, 8), unit="s")
    journey = graph_panel(
        9, "Whole-journey duration p50 / p95 / p99",
        "Percentiles of the whole journey, login to logout (pizza_probe_duration_seconds).",
        grid(8, 8, 8, 8), unit="s")
    for quantile, name, ref_id in QUANTILES:
        # exemplars: each dot is one observed journey with its journey_id (and order_id)
        step_latency = step_latency.with_target(query(
            f"histogram_quantile({quantile}, sum by (le, step) "
            f"(rate(pizza_probe_step_duration_seconds_bucket{{{JOURNEY}}}[$__rate_interval])))",
            f"{name} {{{{step}}}}", ref_id, exemplar=True))
        journey = journey.with_target(query(
            f"histogram_quantile({quantile}, sum by (le) "
            f"(rate(pizza_probe_duration_seconds_bucket{{{JOURNEY}}}[$__rate_interval])))",
            name, ref_id, exemplar=True))
    order_heatmap = (
        heatmap.Panel().id(10).title("Order step latency heatmap")
        .description("Distribution of the order step's duration per interval; throttled orders land in "
                     "the 30-35 s buckets.")
        .datasource(DATASOURCE).grid_pos(grid(16, 8, 8, 8)).unit("short")
        .hide_from(cb.HideSeriesConfig().legend(False).tooltip(False).viz(False))
        .scale_distribution(cb.ScaleDistributionConfig().type(common.ScaleDistribution.LINEAR))
        .calculate(False).cell_gap(1).cell_values(heatmap.CellValues().unit("short"))
        .color(heatmap.HeatmapColorOptions().exponent(0.5).fill("dark-orange").mode(hm.HeatmapColorMode.SCHEME)
               .reverse(False).scale(hm.HeatmapColorScale.EXPONENTIAL).scheme("Oranges").steps(64))
        .exemplars_color("rgba(255,0,255,0.7)")
        .filter_values(heatmap.FilterValueRange().le(1e-09))
        .show_legend()
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO).value("orders"))
        .mode(common.TooltipDisplayMode.SINGLE).show_y_histogram().show_color_scale(False)
        .y_axis(heatmap.YAxisConfig().axis_placement(common.AxisPlacement.LEFT).reverse(False).unit("s"))
        .with_target(query(
            f'sum by (le) (increase(pizza_probe_step_duration_seconds_bucket{{step="order", {JOURNEY}}}'
            "[$__rate_interval]))", "{{le}}", fmt=pm.PromQueryFormat.HEATMAP, exemplar=True)))
    return [row(7, "Is it fast?", 7), step_latency, journey, order_heatmap]


def what_broke() -> list:
    def error_ratio(window: str) -> str:
        return (f"pizza_probe:order_error_ratio:rate{window}{{{JOURNEY}}}\n"
                f'or sum by (instance, job, target) (rate(pizza_probe_orders_total{{result="failure", {JOURNEY}}}'
                f"[{window}]))\n"
                f"/ sum by (instance, job, target) (rate(pizza_probe_orders_total{{{JOURNEY}}}[{window}]))")
    return [
        row(11, "What broke?", 16),
        graph_panel(12, "Orders by result", "Synthetic order journeys per interval, split into success and failure.",
                    grid(0, 17, 8, 8), unit="short", bars=True)
        .overrides(fixed_colours(("success", "green"), ("failure", "red")))
        .with_target(query(f"sum by (result) (increase(pizza_probe_orders_total{{{JOURNEY}}}[$__rate_interval]))",
                           "{{result}}")),
        graph_panel(13, "Failures by step and reason",
                    "Failed journeys per interval by the step that failed and the reason; 'none' while nothing "
                    "failed. Factory chaos: order/factory_error (fail), order/slow (throttle), verify/bad_jwt "
                    "(badjwt). order/factory_unreachable: the service cannot reach its factory at all "
                    "(500 'fetch failed'; no chaos, nothing to heal). tls_error: the probe does not trust a "
                    "certificate (--ca-file). See the runbook.",
                    grid(8, 17, 8, 8), unit="short", bars=True)
        .with_target(query(
            f"sum by (step, reason) (increase(pizza_probe_failures_total{{{JOURNEY}}}[$__rate_interval]))\n"
            'or on () label_replace(label_replace(vector(0), "step", "none", "", ""), "reason", "none", "", "")',
            "{{step}}: {{reason}}")),
        statetimeline.Panel().id(14).title("Chaos link seen")
        .description("1 while the last order answer carried the factory's chaos-ending link "
                     "(pizza_probe_chaos_link_seen).")
        .datasource(DATASOURCE).grid_pos(grid(16, 17, 8, 8)).unit("short")
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .thresholds(steps((None, "green"), (1, "red")))
        .mappings([value_map(("0", "no link", "green"), ("1", "chaos link", "red"))])
        .fill_opacity(70).line_width(0)
        .hide_from(cb.HideSeriesConfig().legend(False).tooltip(False).viz(False))
        .align_value(common.TimelineValueAlignment.LEFT).merge_values(True).row_height(0.9).show_value(common.VisibilityMode.AUTO)
        .legend(cb.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM).show_legend(True))
        .tooltip(cb.VizTooltipOptions().mode(common.TooltipDisplayMode.SINGLE).sort(common.SortOrder.NONE))
        .with_target(query(f"pizza_probe_chaos_link_seen{{{JOURNEY}}}", BY_TARGET)),
        graph_panel(15, "Order error ratio vs. fast burn (14.4x)",
                    "Failed-order ratio over 5m and 1h (recording rules, computed raw if absent); the red line "
                    "is 14.4x the 1% budget, where PizzaOrderErrorBudgetBurn pages when both windows cross it.",
                    grid(0, 25, 24, 8), unit="percentunit", threshold_line=True,
                    thresholds=steps((None, "transparent"), (0.144, "red")),
                    legend=cb.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                    .placement(common.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "max"]))
        .with_target(query(error_ratio("5m"), f"5m {BY_TARGET}", "A"))
        .with_target(query(error_ratio("1h"), f"1h {BY_TARGET}", "B")),
    ]


def did_it_heal() -> list:
    def recovery_quantile(quantile: float) -> str:
        return (f"histogram_quantile({quantile}, sum by (le) "
                f"(rate(pizza_recovery_duration_seconds_bucket{{{SIDECAR}}}[$__range])))")
    return [
        row(16, "Did it heal?", 33),
        graph_panel(17, "Recovery attempts by result",
                    "Recovery-link attempts per interval: resolved, no_chaos, unresolved, error, refused, dry_run.",
                    grid(0, 34, 12, 8), unit="short", bars=True)
        .overrides(fixed_colours(("resolved", "green"), ("no_chaos", "blue"), ("unresolved", "orange"),
                                 ("error", "red"), ("refused", "purple"), ("dry_run", "yellow")))
        .with_target(query(f"sum by (result) (increase(pizza_recovery_attempts_total{{{SIDECAR}}}"
                           "[$__rate_interval]))", "{{result}}")),
        stat_panel(18, "Time to recover (p50 / p95)",
                   "First failed synthetic order to the verified good order, over the time range.",
                   grid(12, 34, 6, 8), unit="s", decimals=1, mappings=[nan_map("no recovery")],
                   thresholds=steps((None, "green"), (60, "orange"), (300, "red")),
                   color_mode=common.BigValueColorMode.VALUE, text_mode=common.BigValueTextMode.VALUE_AND_NAME)
        .with_target(query(recovery_quantile(0.5), "p50", "A", instant=True))
        .with_target(query(recovery_quantile(0.95), "p95", "B", instant=True)),
        stat_panel(19, "Incidents opened", "Incidents the sidecar opened over the time range.",
                   grid(18, 34, 6, 4), unit="short", decimals=0, thresholds=steps((None, "green"), (1, "orange")))
        .with_target(query(f"sum(increase(pizza_recovery_incidents_total{{{SIDECAR}}}[$__range]))", "incidents",
                           instant=True)),
        stat_panel(20, "Incident open now",
                   "Whether the sidecar has an incident open right now (pizza_recovery_incident_open).",
                   grid(18, 38, 6, 4), unit="short", thresholds=steps((None, "green"), (1, "red")),
                   mappings=[value_map(("0", "no", "green"), ("1", "OPEN", "red"))])
        .with_target(query(f"pizza_recovery_incident_open{{{SIDECAR}}}", "{{instance}}", instant=True)),
        stat_panel(21, "Last successful recovery",
                   "When the sidecar last healed the shop and verified a good order; 'never' if it has not yet.",
                   grid(0, 42, 12, 4), unit="dateTimeFromNow", thresholds=steps((None, "blue")),
                   mappings=[value_map(("0", "never", "text"))], color_mode=common.BigValueColorMode.VALUE)
        .with_target(query(f"pizza_recovery_last_success_timestamp_seconds{{{SIDECAR}}} * 1000", "{{instance}}",
                           instant=True)),
        stat_panel(22, "Sidecar enabled",
                   "Whether the sidecar may call recovery links: 0 in dry run or while the kill switch is on.",
                   grid(12, 42, 12, 4), unit="short", thresholds=steps((None, "orange"), (1, "green")),
                   mappings=[value_map(("1", "enabled", "green"), ("0", "dry run / kill switch", "orange"))])
        .with_target(query(f"pizza_recovery_enabled{{{SIDECAR}}}", "{{instance}}", instant=True)),
    ]


# --- the dashboard -----------------------------------------------------------------------------

def dashboard() -> db.Dashboard:
    board = (
        db.Dashboard("JWT Pizza synthetic orders (pizza-probe)").uid("pizza-probe")
        .description("JWT Pizza synthetic orders from pizza-probe: is it up, is it fast, what broke, "
                     "did the sidecar heal it.")
        .tags(["pizza-probe", "jwt-pizza", "synthetic", "slo"]).editable().tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time("now-3h", "now").refresh("30s").timezone("").week_start("").fiscal_year_start_month(0)
        .live_now(False).version(1).links([])
        .timepicker(db.TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m", "30m", "1h"]))
        .with_variable(db.DatasourceVariable("DS_PROMETHEUS").label("Data source").type("prometheus")
                       .description("The Prometheus that scrapes pizza-probe. Makes ${DS_PROMETHEUS} resolve "
                                    "when the dashboard is provisioned from a file rather than imported.")
                       .hide(dm.VariableHide.DONT_HIDE).include_all(False).multi(False).regex(""))
        .with_variable(query_variable("instance", "Exporter", "pizza-probe exporter instance(s)",
                                      "label_values(pizza_probe_build_info, instance)"))
        .with_variable(query_variable(
            "target", "Target",
            "Targets of serve --target NAME=URL on the chosen exporters; All also matches an exporter with one "
            "target (no target label).",
            'label_values(pizza_probe_success{instance=~"$instance"}, target)'))
        .with_variable(query_variable("sidecar", "Sidecar", "pizza-probe sidecar instance(s)",
                                      "label_values(pizza_recovery_incidents_total, instance)"))
        .annotation(db.AnnotationQuery().name("Annotations & Alerts").built_in(True).type("dashboard")
                    .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                    .enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)"))
    )
    for panel in is_it_up() + is_it_fast() + what_broke() + did_it_heal():
        board = board.with_row(panel) if isinstance(panel, db.Row) else board.with_panel(panel)
    return board


# What Grafana's "Export for sharing externally" wraps around a dashboard: the data source to
# ask for on import (fills ${DS_PROMETHEUS}) and the plugins it needs. Not part of the dashboard
# schema, so not built with the SDK.
IMPORT_ENVELOPE = {
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus",
                  "description": "The Prometheus that scrapes pizza-probe and its sidecar",
                  "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "__elements": {},
    "__requires": [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "11.1.0"},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        {"type": "panel", "id": "gauge", "name": "Gauge", "version": ""},
        {"type": "panel", "id": "heatmap", "name": "Heatmap", "version": ""},
        {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
        {"type": "panel", "id": "state-timeline", "name": "State timeline", "version": ""},
        {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
    ],
}


def render() -> dict:
    """The dashboard as the JSON users import."""
    built = plain(dashboard())
    built["id"] = None  # a new dashboard on import, never an overwrite by database id
    annotations = built["annotations"]["list"]
    annotations += [
        sidecar_annotation("Recovered", "green",
                           f"changes(pizza_recovery_last_success_timestamp_seconds{{{SIDECAR}}}[1m]) > 0",
                           "The sidecar healed the shop and verified a good order ({{instance}})"),
        sidecar_annotation("Incident opened", "red",
                           f"changes(pizza_recovery_incidents_total{{{SIDECAR}}}[1m]) > 0",
                           "The sidecar opened an incident ({{instance}})"),
    ]
    for panel in built["panels"]:
        if panel["type"] == "row":  # a row's description is not in the row schema; kept for readers
            panel["description"] = ROW_DESCRIPTIONS[panel["title"]]
    return {**IMPORT_ENVELOPE, **built}


def dumps(board: dict) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=OUTPUT, help="where to write the JSON; - for stdout "
                        "(default: dashboards/pizza-probe.json)")
    args = parser.parse_args(argv)
    text = dumps(render())
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
