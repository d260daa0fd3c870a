"""Importing the package (what `kopf run -m recengine_operator` does) registers the handlers."""

from __future__ import annotations

import kopf

import recengine_operator.main


def test_importing_the_package_registers_change_handlers_and_the_timer():
    registry = kopf.get_default_registry()
    changing = {h.id: h for h in registry._changing.get_all_handlers()}
    assert {"create", "resume", "update/spec"} <= set(changing)
    (timer,) = [h for h in registry._spawning.get_all_handlers() if h.id == "reconcile"]
    assert timer.interval == recengine_operator.main.CONFIG.interval_s
    for handler in (*changing.values(), timer):
        assert handler.selector.group == "recengine.io"
        assert handler.selector.plural == "recengines"


def test_no_delete_handler_is_registered():
    registry = kopf.get_default_registry()
    assert not [h for h in registry._changing.get_all_handlers() if h.deleted or
                (h.reason is not None and h.reason.value == "delete")]
