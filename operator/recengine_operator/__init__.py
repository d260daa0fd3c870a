"""recengine operator: rolls a RecEngine's index pods from embedding version to version.

``kopf run -m recengine_operator`` imports this package, and importing it registers the kopf
handlers (:mod:`recengine_operator.main`). The logic lives in pure modules — ``spec``,
``policy``, ``rollout``, ``status``, ``reconcile`` — that import neither kopf nor kubernetes.
"""

from recengine_operator import main as _main  # noqa: F401  (registers the handlers)
