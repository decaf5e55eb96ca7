"""One world-model gradient step on a fixed global batch, run as one of P processes (each with
D simulated CPU devices) by `test_distributed.py`; process 0 writes the loss and gradients.

  python tests/runtime/distributed_step.py <process_id> <num_processes> <port> <devices> <out>
"""
import os
import sys

process_id, num_processes, port, devices = map(int, sys.argv[1:5])
out = sys.argv[5]
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from jaxwm.runtime import distributed, sharding  # noqa: E402

distributed.initialize(ml_collections.ConfigDict(dict(  # before anything touches a device
    coordinator=f"localhost:{port}", num_processes=num_processes, process_id=process_id)))

from jaxwm.agents.dreamer.config import get_config  # noqa: E402
from jaxwm.envs.base import ActionSpace, Space  # noqa: E402
from jaxwm.models.dreamer import WorldModel  # noqa: E402
T, B, D, A = 8, 8, 5, 1               # the smoke preset's CartpoleBalance: 5 obs, 1 action
wm = WorldModel(get_config("smoke").model, {"vector": Space((D,), np.float32)},
                ActionSpace(False, A))
rng = np.random.default_rng(0)        # the same global batch in every process
batch = {"vector": rng.normal(size=(T, B, D)).astype(np.float32),
         "action": rng.uniform(-1, 1, (T, B, A)).astype(np.float32),
         "reward": rng.uniform(0, 1, (T, B)).astype(np.float32),
         "is_first": np.zeros((T, B), bool), "is_last": np.zeros((T, B), bool),
         "is_terminal": np.zeros((T, B), bool)}
batch["is_first"][0] = True
share = B // num_processes
local = {k: v[:, process_id * share:(process_id + 1) * share] for k, v in batch.items()}

mesh = sharding.make_mesh()           # every device of every process
params = distributed.replicate(wm.init(jax.random.PRNGKey(1)), mesh)
key = distributed.replicate(jax.random.PRNGKey(2), mesh)   # raw uint32 keys
grad_fn = jax.jit(jax.value_and_grad(lambda p, b, k: wm.loss(p, b, k)[0]))
loss, grads = grad_fn(params, distributed.global_batch(local, mesh, axis=1), key)
if process_id == 0:
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    np.savez(out, loss=distributed.local_value(loss), devices=jax.device_count(),
             **{jax.tree_util.keystr(p): distributed.local_value(g) for p, g in leaves})
