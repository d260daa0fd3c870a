"""The operator's statsd metrics, ``recengine.operator.*`` (listed in ``docs/metrics.md``).

Sent once per reconciliation, after its status was written: the Events a plan posts are
exactly its transitions (a rollout started, succeeded, rolled back or failed; a version
rejected by the quality gate), and a status that was written is a transition that happened,
so a reconciliation that plans nothing new counts nothing, however often it runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from recengine.backends.registry import open_metrics
from recengine.config import parse_url
from recengine.metrics import Metrics
from recengine_operator import status as st
from recengine_operator.config import Config
from recengine_operator.reconcile import Plan


def open_operator_metrics(config: Config) -> Metrics:
    """statsd metrics of service ``operator`` at ``config.metrics_url`` (no-op when off)."""
    return open_metrics(parse_url("metrics", config.metrics_url), "operator")


def record(metrics: Metrics, namespace: str, name: str, old_status: Mapping[str, Any] | None,
           plan: Plan, now: datetime) -> None:
    """The metrics of one reconciliation whose new status was written."""
    for event in plan.events:
        match event.reason:
            case "RollingOut":
                metrics.incr("rollouts_started")
            case "RolloutSucceeded":
                metrics.incr("rollouts_succeeded")
                started = st.parse_time((old_status or {}).get("rolloutStartedAt"))
                if started is not None:
                    metrics.timing("rollout_ms",
                                   max(0.0, (now - started).total_seconds() * 1000))
            case "RollingBack":
                metrics.incr("rollouts_rolled_back")
            case "RolledBack":
                metrics.incr("rollbacks_completed")
            case "RolloutFailed":
                metrics.incr("rollouts_failed")
            case "QualityGateRejected":
                metrics.incr("versions_rejected")
    current = plan.status.get("currentVersion")
    if current is not None:
        metrics.gauge(f"current_version.{_node(namespace)}.{_node(name)}", current)


def _node(text: str) -> str:
    """``text`` as one Graphite path node (a dot would split it)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)
