"""A run's workdir is its contract: validate the config, then match the saved one, then write.

Every binary, inside `user_errors()` and before it writes anything:
1. range-checks the whole config (`check_values`): sizes and counts are positive integers (and
   every integer fits in int32), rates and scales finite and in their ranges, naming
   `field=value` and the allowed range; the env name and suite options exist;
2. builds its env and agent (their own checks name bad fields and allowed values);
3. if `workdir/config.json` exists, requires the same config except the `extendable` fields
   (e.g. more env steps) (`check_saved_config`), else refuses the run listing the differing
   fields: a rerun cannot silently mix two runs;
4. writes `config.json` (atomically) only after its checkpoint is known to fit.
User errors are `UserError`s: `jaxwm.runtime.cli` prints them on one line and exits with status 2.
"""
import contextlib
import json
import math
import os
import re
from typing import Iterable, Mapping

import ml_collections

from jaxwm import envs


class UserError(ValueError):
    """A bad config, env, dataset or workdir: reported on one line, exit status 2."""


# Integer fields that may be 0 (matched on the last name of the dotted path); every other
# integer field is a size, count or period and must be >= 1. Negative integers are always bad.
ZERO_OK = re.compile(
    r"^(seed|prefill|seed_steps|eval_episodes|eval_every|every|video_every|pretrain_updates|"
    r"std_schedule_steps|horizon_schedule_steps|imag_starts|deployments|num_devices|policy_updates|max_episode_steps|"
    r"checkpoints_to_keep|pretrain|value_members|process_id|warmup_steps|warmup_teacher_temp_steps|"
    r"num_registers)$")
# Every integer is at most int32's maximum: sizes, counts and seeds end up as JAX int32 shapes
# and indices and as envpool's C ints.
INT_MAX = 2**31 - 1
# Layer counts (last name) are at most MAX_LAYERS: networks build a tuple of their layer sizes.
LAYERS = re.compile(r"^(layers|.*_layers)$")
MAX_LAYERS = 1024
# Seeds are at most MAX_SEED: binaries derive env seeds such as seed * 1000 + deployment and
# seed + 20_000, which envpool needs below 2**31.
MAX_SEED = 2**20
# Float fields with a closed range [low, high] (last name); others must be finite and >= 0
# unless listed in ANY_SIGN.
FLOAT_RANGES = {
    "discount": (0.0, 1.0), "gamma": (0.0, 1.0), "return_lambda": (0.0, 1.0),
    "kl_balance": (0.0, 1.0), "tau": (0.0, 1.0), "rho": (0.0, 1.0), "unimix": (0.0, 1.0),
    "actor_unimix": (0.0, 1.0), "momentum": (0.0, 1.0), "expectile": (0.0, 1.0),
    "offline_fraction": (0.0, 1.0), "slow_target_fraction": (0.0, 1.0),
    "return_norm_decay": (0.0, 1.0), "norm_decay": (0.0, 1.0), "actor_grad_mix": (0.0, 1.0),
    "scale_tau": (0.0, 1.0), "diversity_scale": (0.0, 1.0), "beta": (0.0, 1.0),
    "gae_lambda": (0.0, 1.0), "epsilon_start": (0.0, 1.0), "epsilon_end": (0.0, 1.0),
    "epsilon": (0.0, 1.0),
}
POSITIVE_FLOATS = re.compile(r"^(lr|.*_lr|eps|opt_eps|clip|grad_clip|.*_std|min_std|max_std|"
                             r"temperature|bin_range|policy_std|awr_scale)$")
ANY_SIGN = re.compile(r"^(log_std_min|log_std_max|v_min|v_max)$")


def _leaves(config: Mapping, prefix: str = "") -> Iterable:
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _leaves(value, path + ".")
        else:
            yield path, value


def check_ranges(config: ml_collections.ConfigDict) -> None:
    """Raise UserError naming the first `field=value` outside its allowed range (module
    docstring); booleans and strings are left to the binaries' own checks."""
    for path, value in _leaves(config.to_dict()):
        parent, _, name = path.rpartition(".")
        if parent.endswith("loss_scales"):  # loss weights: any value >= 0
            name = "weight"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, int):
            low = 0 if ZERO_OK.match(name) else 1
            if value < low:
                raise UserError(f"{path}={value}: must be an integer >= {low}")
            if value > INT_MAX:
                raise UserError(f"{path}={value}: must be an integer <= {INT_MAX} (int32)")
            if LAYERS.match(name) and value > MAX_LAYERS:
                raise UserError(f"{path}={value}: must be an integer in [1, {MAX_LAYERS}]")
            if name == "seed" and value > MAX_SEED:
                raise UserError(f"{path}={value}: must be an integer in [0, {MAX_SEED}]")
            continue
        if not math.isfinite(value):
            raise UserError(f"{path}={value}: must be finite")
        if name in FLOAT_RANGES:
            low, high = FLOAT_RANGES[name]
            if not low <= value <= high:
                raise UserError(f"{path}={value}: must be in [{low}, {high}]")
        elif POSITIVE_FLOATS.match(name):
            if value <= 0:
                raise UserError(f"{path}={value}: must be > 0")
        elif not ANY_SIGN.match(name) and value < 0:
            raise UserError(f"{path}={value}: must be >= 0")


def _flat(config: Mapping) -> dict:
    return dict(_leaves(config))


def check_saved_config(config: ml_collections.ConfigDict, workdir: str,
                       extendable: Iterable[str] = (), added: Mapping | None = None) -> None:
    """Refuse a workdir whose config.json differs from `config` outside `extendable` fields
    (dotted paths), or that is not a config of this binary. `added`: {block: its default
    fields} of config blocks introduced after runs were saved; a saved config without such a
    block matches a config whose block holds exactly those defaults (the run it describes
    behaved that way), so older runs still resume."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    advice = f"resume with the saved config, or choose a new --workdir (not {workdir})"
    try:
        with open(path) as f:
            saved = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise UserError(f"{path} is not a readable config.json ({e}); {advice}") from None
    if not isinstance(saved, dict):
        raise UserError(f"{path} is not a config of this binary; {advice}")
    new = _flat(json.loads(config.to_json_best_effort()))
    old = _flat(saved)
    for block, defaults in (added or {}).items():
        prefix = block + "."
        if any(k.startswith(prefix) for k in old):
            continue
        ours = {k: v for k, v in new.items() if k.startswith(prefix)}
        if ours == {prefix + k: v for k, v in _flat(defaults).items()}:
            new = {k: v for k, v in new.items() if k not in ours}
    if set(old) != set(new) and len(set(old) & set(new)) < len(new) // 2:
        raise UserError(f"{path} is not a config of this binary (other fields); {advice}")
    extendable = set(extendable)
    changed = [f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}"
               for k in sorted(set(old) | set(new))
               if k not in extendable and old.get(k, "<absent>") != new.get(k, "<absent>")]
    if changed:
        raise UserError(f"--workdir holds a run with another config ({'; '.join(changed)}); "
                        f"{advice}")


@contextlib.contextmanager
def user_errors():
    """Turn the ValueErrors (and missing files) of a block that validates or builds from the
    config, before anything is written, into UserErrors."""
    try:
        yield
    except UserError:
        raise
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None


def check_values(config: ml_collections.ConfigDict) -> None:
    """`check_ranges`, then the env name and suite options (`env.name`, `env.overrides`)."""
    check_ranges(config)
    if "env" in config and "name" in config.env:
        with user_errors():
            envs.check(config.env.name, **dict(config.env.get("overrides", {}) or {}))
