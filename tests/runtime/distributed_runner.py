"""One process of a 2-process DayDreamer smoke run (threads backend), launched by
`test_distributed.py`; writes its summary and a checksum of its learner parameters.

  python tests/runtime/distributed_runner.py <process_id> <port> <workdir> <out.json>
"""
import json
import os
import sys

process_id, port = int(sys.argv[1]), int(sys.argv[2])
workdir, out = sys.argv[3], sys.argv[4]
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxwm.agents.daydreamer.config import get_config  # noqa: E402
from jaxwm.agents.daydreamer.train import train_and_evaluate  # noqa: E402

config = get_config("smoke")
config.distributed.update(coordinator=f"localhost:{port}", num_processes=2,
                          process_id=process_id)
config.runner.update(steps=96, checkpoint_every=40, replay_capacity=200, eval_episodes=0)
final = {}
summary = train_and_evaluate(config, workdir, on_end=final.update)
params = jax.tree.leaves(final["agent"].wm.params)
summary["param_checksum"] = float(sum(
    np.abs(np.asarray(p.addressable_shards[0].data)).sum() for p in params))
summary["devices"] = jax.device_count()
with open(out, "w") as f:
    json.dump(summary, f)
