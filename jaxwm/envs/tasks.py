"""Multi-reward task families: several task rewards computed from one environment state.

Used for reward-free exploration followed by zero-shot evaluation (Plan2Explore, Sekar et al.
2020, Sec. 5; CASCADE, Xu et al. 2022, Sec. 5): while collecting, every replay step is labelled
with all rewards of the family (replay keys `reward/<task>`), so a task's reward head and
actor-critic can later be trained offline, and evaluation episodes are scored by the same labels.

A family has `tasks` (names) and `label(out) -> {'reward/<task>': float32 [N]}` for one batched
env output `out` (see `jaxwm.envs.base`); labels are 0 at `is_first` like env rewards.

`walker`: DMC walker stand / walk / run / flip from one physics state, with dm_control's
`rewards.tolerance` and the walker physics accessors (dm_control suite walker.py; flip as in the
URLB / CASCADE task sets, ALGORITHMS.md Sec. 4):
  standing = tol(torso_height, (1.2, inf), margin 0.6)      upright = (1 + torso_upright) / 2
  stand = (3 * standing + upright) / 4
  walk  = stand * (5 * tol(speed, (1, inf), margin 0.5, value_at_margin 0.5, linear) + 1) / 6
  run   = stand * (5 * tol(speed, (8, inf), margin 4, value_at_margin 0.5, linear) + 1) / 6
  flip  = tol(angmom_y(torso), (5, inf), margin 5, value_at_margin 0, linear)
States come from the env output's 'physics/state' (qpos, qvel, act; `dmc:walker_*` envs), set
into a private Physics, so labelling is a pure function of recorded data. The reward of an
agent step is `action_repeat` times the reward at its final control step (the env's own reward
sums the repeated control steps); with action_repeat = 1 it equals dm_control's reward exactly.
"""
import jax.numpy as jnp
import numpy as np

WALKER_TASKS = ("stand", "walk", "run", "flip")
_STAND_HEIGHT, _WALK_SPEED, _RUN_SPEED, _SPIN_SPEED = 1.2, 1.0, 8.0, 5.0


class WalkerTasks:
    """The walker family; `action_repeat` scales per-step labels (see module docstring)."""
    tasks = WALKER_TASKS

    def __init__(self, action_repeat: int = 1):
        from dm_control.suite import walker
        self.action_repeat = int(action_repeat)
        self._physics = walker.Physics.from_xml_string(*walker.get_model_and_assets())

    def rewards(self, state: np.ndarray) -> dict:
        """Rewards of one physics state [S] (qpos, qvel, act): {task: float}."""
        from dm_control.utils import rewards
        physics = self._physics
        with physics.reset_context():  # sets the state, then mj_forward (incl. subtree momenta)
            physics.set_state(np.asarray(state, np.float64))
        standing = rewards.tolerance(physics.torso_height(), bounds=(_STAND_HEIGHT, float("inf")),
                                     margin=_STAND_HEIGHT / 2)
        upright = (1 + physics.torso_upright()) / 2
        stand = (3 * standing + upright) / 4
        speed = physics.horizontal_velocity()

        def move(target):
            return rewards.tolerance(speed, bounds=(target, float("inf")), margin=target / 2,
                                     value_at_margin=0.5, sigmoid="linear")

        angmom = physics.named.data.subtree_angmom["torso"][1]
        flip = rewards.tolerance(angmom, bounds=(_SPIN_SPEED, float("inf")), margin=_SPIN_SPEED,
                                 value_at_margin=0, sigmoid="linear")
        return {"stand": stand, "walk": stand * (5 * move(_WALK_SPEED) + 1) / 6,
                "run": stand * (5 * move(_RUN_SPEED) + 1) / 6, "flip": flip}

    def label(self, out: dict) -> dict:
        """{'reward/<task>': float32 [N]} for a batched env output with 'physics/state' [N, S]."""
        if "physics/state" not in out:
            raise ValueError("walker task labels need the env output key 'physics/state' "
                             "(use a 'dmc:walker_*' environment)")
        states, first = out["physics/state"], out["is_first"]
        labels = {f"reward/{t}": np.zeros(len(states), np.float32) for t in self.tasks}
        for i, state in enumerate(states):
            if first[i]:
                continue
            for task, value in self.rewards(state).items():
                labels[f"reward/{task}"][i] = self.action_repeat * float(value)
        return labels


class ExtrinsicTask:
    """The environment's own reward as the single held-out task ('extrinsic'): reward-free
    exploration on Atari or Crafter, then a task policy trained zero-shot on the game score
    (CASCADE, Xu et al. 2022, Sec. 5: Atari and Crafter evaluations)."""
    tasks = ("extrinsic",)
    jittable = True                # `label` also works on traced outputs (on-device loops)

    def label(self, out: dict) -> dict:
        reward = out["reward"]
        if isinstance(reward, np.ndarray):
            return {"reward/extrinsic": reward.astype(np.float32)}
        return {"reward/extrinsic": jnp.asarray(reward, jnp.float32)}


FAMILIES = ("walker", "extrinsic")


def make_family(name: str, env=None):
    """Task family `name` ('walker' or 'extrinsic'); `env` supplies the walker's action repeat
    (default 1)."""
    if name not in FAMILIES:
        raise ValueError(f"task family {name!r} is not one of {FAMILIES}")
    if name == "extrinsic":
        return ExtrinsicTask()
    repeat = 1
    if env is not None:
        repeat = int(getattr(env, "config", {}).get("action_repeat", 1))
    return WalkerTasks(repeat)


def label_keys(family) -> tuple:
    """Replay keys `reward/<task>` of a family's labels; () for None (no family)."""
    return tuple(f"reward/{t}" for t in family.tasks) if family is not None else ()


def family_for_env(env_name: str, env=None):
    """The task family whose labels fit environment `env_name`, or None: walker tasks for
    'dmc:walker_*', the game score for Atari ('*-v5') and Craftax, none for MiniGrid or other
    DMC tasks (their coverage or own reward is reported instead). A JAX-native backend's
    prefix ('craftax:', 'xminigrid:') is ignored."""
    if ":" in env_name and not env_name.startswith("dmc:"):
        env_name = env_name.split(":", 1)[1]
    if env_name.startswith("dmc:walker_"):
        return make_family("walker", env)
    if env_name.endswith("-v5") or env_name.startswith("Craftax"):
        return make_family("extrinsic")
    return None
