"""Reconcile one RecEngine: read what is, plan (pure), then patch the Deployment and the status.

Every kopf handler of a RecEngine — create, resume, spec update and the timer — lands here, so
there is one code path, and it is safe to run at any time and any number of times: it reads
the resource fresh from the API (not kopf's possibly older copy), and a per-resource lock
keeps the timer and a change handler from planning at once in this process.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from recengine.errors import RecEngineError
from recengine_operator.artifacts import store_address
from recengine_operator.handlers.runtime import Runtime
from recengine_operator.kube import api_message
from recengine_operator.metrics import record
from recengine_operator.reconcile import Catalog, Plan, needs_catalog, plan, with_problem
from recengine_operator.spec import EngineSpec, InvalidSpec, parse_spec


def reconcile(runtime: Runtime, namespace: str, name: str, logger: logging.Logger,
              now: datetime | None = None) -> None:
    with runtime.exclusive(namespace, name):
        obj = runtime.kube.get_recengine(namespace, name)
        if obj is None or obj.get("metadata", {}).get("deletionTimestamp"):
            return  # gone or going: deleting a RecEngine leaves the Deployment as it is
        with runtime.metrics.timer("reconcile_ms"):
            _reconcile(runtime, namespace, obj, logger, now or datetime.now(UTC))


def _reconcile(runtime: Runtime, namespace: str, obj: dict[str, Any], logger: logging.Logger,
               now: datetime) -> None:
    name = obj["metadata"]["name"]
    generation = int(obj["metadata"].get("generation") or 0)
    spec_raw, status = obj.get("spec") or {}, obj.get("status") or {}
    try:
        engine: EngineSpec | None = parse_spec(spec_raw)
    except InvalidSpec:
        engine = None  # plan() reports it

    deployment = None
    catalog, catalog_error = None, None
    unreadable = None
    if engine is not None:
        try:
            deployment = runtime.kube.get_deployment(namespace, engine.deployment)
        except ApiException as exc:  # e.g. 403: the operator's RBAC does not cover it
            unreadable = f"reading Deployment {engine.deployment} failed: {api_message(exc)}"
        if unreadable is None and needs_catalog(status):
            catalog, catalog_error = _catalog(runtime, namespace, engine, logger)

    if unreadable is not None:
        result: Plan = with_problem(status, "DeploymentUnreadable", unreadable, now=now,
                                    generation=generation)
    else:
        result = plan(spec_raw, status, generation, deployment, catalog=catalog,
                      catalog_error=catalog_error, now=now,
                      history_limit=runtime.config.history_limit,
                      container=runtime.config.container)

    if result.deployment_patch is not None and engine is not None:
        try:
            if runtime.kube.patch_deployment(namespace, engine.deployment,
                                             result.deployment_patch):
                logger.info("patched Deployment %s: %s", engine.deployment,
                            result.deployment_patch)
            else:
                result = with_problem(status, "DeploymentNotFound",
                                      f"Deployment {engine.deployment} disappeared",
                                      now=now, generation=generation)
        except ApiException as exc:
            logger.warning("patching Deployment %s failed: %s", engine.deployment,
                           api_message(exc))
            result = with_problem(status, "DeploymentPatchFailed",
                                  f"patching Deployment {engine.deployment} failed: "
                                  f"{api_message(exc)}", now=now, generation=generation)

    patch = result.status_patch(status)
    if patch and not runtime.kube.patch_recengine_status(namespace, name, patch):
        return  # deleted meanwhile
    record(runtime.metrics, namespace, name, status, result, now)
    for event in result.events:
        logger.log(logging.WARNING if event.type == "Warning" else logging.INFO,
                   "%s: %s", event.reason, event.message)
        runtime.post_event(obj, event)


def _catalog(runtime: Runtime, namespace: str, engine: EngineSpec,
             logger: logging.Logger) -> tuple[Catalog | None, str | None]:
    """The published versions, or why they cannot be read. Never raises: a store problem is
    reported in the status (Degraded: ArtifactsUnavailable) and retried on the next tick."""
    try:
        secret = runtime.kube.get_secret(namespace, engine.secret_ref)
        url, store_name = store_address(secret, engine.secret_ref)
        return runtime.catalogs.load(url, store_name), None
    except ApiException as exc:
        return None, f"reading Secret {engine.secret_ref}: {api_message(exc)}"
    except (ValueError, RecEngineError) as exc:
        return None, str(exc)
    except Exception as exc:  # the backend's own errors (driver missing, bad URL, I/O)
        logger.debug("reading the artifact store failed", exc_info=True)
        return None, f"{type(exc).__name__}: {exc}"
