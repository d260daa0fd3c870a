"""``python -m recengine_operator``: run the operator configured by ``RECENGINE_OPERATOR_*``.

The same as ``kopf run -m recengine_operator`` with the namespaces, peering and liveness
endpoint taken from :class:`recengine_operator.config.Config` instead of flags.
"""

from __future__ import annotations

import kopf

from recengine_operator.main import CONFIG


def main() -> None:
    kopf.configure(verbose=False)
    kopf.run(
        clusterwide=not CONFIG.namespaces,
        namespaces=CONFIG.namespaces,
        standalone=True if not CONFIG.peering else None,
        peering_name=CONFIG.peering or None,
        priority=CONFIG.priority,
        liveness_endpoint=CONFIG.liveness or None,
    )


if __name__ == "__main__":
    main()
