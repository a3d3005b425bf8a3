"""How busy the server was during a load level, from its ``/metrics`` (Prometheus text).

Read before and after each level: the process's CPU seconds (``process_cpu_seconds_total``)
say how many cores it kept busy on average, and each engine's summed call time
(``voice_engine_run_seconds_sum``) how many of its calls ran at once on average. A server
without them (another service, or metrics not reachable) gives no figures, not an error.
"""

from __future__ import annotations

import logging
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.parser import text_string_to_metric_families

logger = logging.getLogger(__name__)

CPU_SECONDS = "process_cpu_seconds"
ENGINE_RUN = "voice_engine_run_seconds"


def metrics_url(websocket_url: str) -> str:
    """The server's ``/metrics`` address from its websocket URL."""
    parts = urlsplit(websocket_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "/metrics", "", ""))


def parse(text: str) -> dict[str, float]:
    """The counters this module needs: ``cpu_s`` and ``engine:NAME`` (seconds)."""
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.name == CPU_SECONDS and sample.name == CPU_SECONDS + "_total":
                figures["cpu_s"] = sample.value
            elif family.name == ENGINE_RUN and sample.name == ENGINE_RUN + "_sum":
                figures[f"engine:{sample.labels.get('engine', '?')}"] = sample.value
    return figures


def read(websocket_url: str, timeout_s: float = 5.0) -> dict[str, float] | None:
    """The counters now (blocking: call it off the event loop); None if unreachable."""
    try:
        with urllib.request.urlopen(metrics_url(websocket_url), timeout=timeout_s) as answer:
            return parse(answer.read().decode("utf-8", "replace"))
    except (OSError, ValueError) as error:
        logger.info("no server metrics from %s: %s", metrics_url(websocket_url), error)
        return None


def busy(before: dict[str, float] | None, after: dict[str, float] | None,
         elapsed_s: float) -> dict[str, Any]:
    """Cores and engine calls busy on average between two readings ({} without both)."""
    if not before or not after or elapsed_s <= 0:
        return {}
    result: dict[str, Any] = {}
    if "cpu_s" in before and "cpu_s" in after:
        result["server_cpu_cores"] = (after["cpu_s"] - before["cpu_s"]) / elapsed_s
    engines = {key.removeprefix("engine:"): (after[key] - before.get(key, 0.0)) / elapsed_s
               for key in after if key.startswith("engine:")}
    if engines:
        result["engine_calls_running"] = engines
    return result


def describe(figures: dict[str, Any], cores_here: int | None) -> str:
    """One line for the summary, or "" without figures."""
    if not figures:
        return ""
    parts = []
    if "server_cpu_cores" in figures:
        of = f" of the {cores_here} here" if cores_here else ""
        parts.append(f"server CPU {figures['server_cpu_cores']:.2f} cores busy on average{of}")
    running = figures.get("engine_calls_running", {})
    if running:
        parts.append("engine calls running on average: " + ", ".join(
            f"{name} {value:.2f}" for name, value in sorted(running.items())))
    return "; ".join(parts)
