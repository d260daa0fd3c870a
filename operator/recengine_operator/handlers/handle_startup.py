"""Operator start-up: kopf settings (finalizer, storage, peering, timeouts) and the runtime."""

from __future__ import annotations

import logging
import random

import kopf

from recengine_operator.config import Config
from recengine_operator.handlers.runtime import Runtime
from recengine_operator.kube import Kube, api_client
from recengine_operator.metrics import open_operator_metrics

#: kopf puts this finalizer on every RecEngine because the reconciliation timer needs it
#: (kopf stops a resource's timers before letting it go). It guards no cleanup of ours: on
#: deletion kopf stops the timer and removes it at once.
FINALIZER = "recengine.io/operator"
#: Prefix of the annotations kopf keeps its own bookkeeping in (never in ``status``).
ANNOTATION_PREFIX = "operator.recengine.io"


def configure(settings: kopf.OperatorSettings, config: Config, logger: logging.Logger) -> None:
    """Adjust kopf's settings; what was given on the ``kopf run`` command line wins."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    # The API server parses timeoutSeconds as an integer: "300.0" is a 400.
    settings.watching.server_timeout = int(config.watch_timeout_s)
    settings.watching.client_timeout = config.watch_timeout_s + 30
    settings.posting.level = logging.INFO

    peering = settings.peering
    if not peering.standalone and not peering.mandatory and config.peering:
        # Auto-detection (neither --peering nor --standalone): look for our peering object.
        peering.name = config.peering
    if peering.priority == 0:  # no --priority: every replica differs, exactly one is active
        peering.priority = (config.priority if config.priority is not None
                            else random.randint(1, 1_000_000_000))
    logger.info("recengine operator: timer every %gs, peering %s, priority %d",
                config.interval_s, "off" if peering.standalone else repr(peering.name),
                peering.priority)


def build_runtime(config: Config) -> Runtime:
    """The runtime shared by every handler (API client from in-cluster or KUBECONFIG)."""
    return Runtime(config=config, kube=Kube(api_client(), config.api_timeout_s),
                   metrics=open_operator_metrics(config))
