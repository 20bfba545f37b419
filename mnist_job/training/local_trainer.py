"""Ray Train's ``TorchTrainer`` for a local run: without the actors that only a cluster needs.

Ray Train V2 starts, next to its controller and the workers, a helper actor for each cluster concern,
each a Python process of its own that imports Ray (about a second of CPU, more on busy cores):

* ``AutoscalingCoordinator`` (Ray Data's), told how many CPUs the run wants so an autoscaler can add
  nodes; a local cluster has no autoscaler.
* ``PlacementGroupCleaner``, which removes the run's placement group should the controller die; on a
  local cluster the group dies with the ``mnist-job train`` process that owns the cluster.
* ``DatasetManager``, which hands Ray Datasets to the workers; the job passes none (each worker loads
  its shard with mnist_job/data/format.py).

On 2 cores these start while the worker actors start, and delay the first training step
(bench/startup.py measures it). ``local_torch_trainer`` builds a trainer without them. The names it
relies on are Ray Train V2's internals (Ray 2.60); where they moved, it says so in the log and returns
the plain ``TorchTrainer``, which works, only slower. A cluster run (``RAY_ADDRESS`` set) uses the
plain ``TorchTrainer``.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

try:
    from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    from ray.train.v2._internal.execution.scaling_policy import FixedScalingPolicy
except ImportError as exc:  # pragma: no cover (a Ray whose internals moved)
    FixedScalingPolicy = None
    _MISSING = str(exc)
else:

    class LocalScalingPolicy(FixedScalingPolicy):
        """The fixed worker count, asked of no autoscaling coordinator (runs in the controller)."""

        def after_controller_start(self, train_run_context) -> None:
            self._requester_id = f"train-{train_run_context.run_id}"

        def _maybe_send_resource_request(self) -> None:
            pass

        def _send_resource_request(self) -> None:
            pass


def local_torch_trainer(*args, **kwargs):
    """A ``TorchTrainer(*args, **kwargs)`` that starts no autoscaling coordinator, placement-group cleaner
    or (without datasets) dataset manager."""
    from ray.train.torch import TorchTrainer

    if FixedScalingPolicy is None:  # pragma: no cover
        logger.warning(f"ray: Ray Train's internals moved ({_MISSING}); the local run starts its cluster helpers")
        return TorchTrainer(*args, **kwargs)

    class LocalTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            unneeded = (PlacementGroupCleanerCallback,) + (() if self.datasets else (DatasetsCallback,))
            return [c for c in super()._create_default_callbacks() if not isinstance(c, unneeded)]

        def _initialize_and_run_controller(self, **controller_init_kwargs):
            if type(controller_init_kwargs.get("scaling_policy")) is FixedScalingPolicy:  # not an elastic one
                controller_init_kwargs["scaling_policy"] = LocalScalingPolicy(self.scaling_config)
            return super()._initialize_and_run_controller(**controller_init_kwargs)

    return LocalTorchTrainer(*args, **kwargs)
