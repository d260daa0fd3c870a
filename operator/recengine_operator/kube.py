"""Thin I/O with the Kubernetes API: the RecEngine, its Secret, the index Deployment, Events.

Objects are returned as plain dicts with the API's camelCase keys, which is what the pure
modules take: responses are parsed as JSON, never into the client's typed models (which would
refuse or drop fields the client version does not know). A 404 means "already gone": reads
return ``None`` and patches ``False``; any other API error is raised
(:class:`kubernetes.client.exceptions.ApiException`).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from recengine_operator.reconcile import Event
from recengine_operator.spec import GROUP, PLURAL, VERSION

STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


def api_client() -> client.ApiClient:
    """A client configured in-cluster (service account) or else from ``KUBECONFIG`` /
    ``~/.kube/config`` — the same sources kopf logs in with."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def api_message(exc: ApiException) -> str:
    """The API server's own message of an error, else its status line."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return f"{exc.status} {message or exc.reason}"


class Kube:
    """The few calls the operator makes, each with a timeout."""

    def __init__(self, api: client.ApiClient, timeout_s: float = 10.0) -> None:
        self.api = api
        self.timeout = timeout_s
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        return json.loads(response.data)

    def get_recengine(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _preload_content=False,
                _request_timeout=self.timeout))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_recengine_status(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """Merge-patch the status subresource; ``False`` if the RecEngine is gone."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": patch},
                _content_type=MERGE, _preload_content=False, _request_timeout=self.timeout)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self.apps.read_namespaced_deployment(
                name, namespace, _preload_content=False, _request_timeout=self.timeout))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> bool:
        """Strategic-merge-patch a Deployment; ``False`` if it is gone."""
        try:
            self.apps.patch_namespaced_deployment(
                name, namespace, patch, _content_type=STRATEGIC_MERGE, _preload_content=False,
                _request_timeout=self.timeout)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data, decoded (keys whose value is not UTF-8 are left out)."""
        try:
            secret = self._json(self.core.read_namespaced_secret(
                name, namespace, _preload_content=False, _request_timeout=self.timeout))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        out = dict(secret.get("stringData") or {})
        for key, value in (secret.get("data") or {}).items():
            try:
                out[key] = base64.b64decode(value).decode()
            except (binascii.Error, UnicodeDecodeError):
                continue
        return out


def post_event(obj: dict[str, Any], event: Event) -> None:
    """Post a Kubernetes Event on the object, through kopf's queue (kopf retries and never
    blocks the handler; it needs the object's apiVersion, kind and metadata)."""
    kopf.event(obj, type=event.type, reason=event.reason, message=event.message[:1024])
