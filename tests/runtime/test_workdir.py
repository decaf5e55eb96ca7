"""The run contract (`jaxwm.runtime.workdir`): ranges checked before anything is written, a
workdir refuses a run with another config, foreign or garbage config.json files are refused."""
import json
import math

import ml_collections
import pytest

from jaxwm.agents.cascade.config import get_config as cascade_config
from jaxwm.agents.tdmpc.config import get_config as tdmpc_config
from jaxwm.runtime import workdir
from jaxwm.runtime.logging import save_config


@pytest.mark.parametrize("field, value, message", [
    # sizes and counts: the crashes (ZeroDivisionError, broadcast TypeError, silent runs)
    ("cascade.population", 0, "cascade.population=0: must be an integer >= 1"),
    ("deploy.model_grad_steps", 0, "deploy.model_grad_steps=0: must be an integer >= 1"),
    ("deploy.policy_updates", -3, "deploy.policy_updates=-3: must be an integer >= 0"),
    ("deploy.batch_size", -1, "deploy.batch_size=-1: must be an integer >= 1"),
    ("model.deter", -5, "model.deter=-5: must be an integer >= 1"),
    ("model.deter", 0, "model.deter=0: must be an integer >= 1"),
    # past int32 (envpool's C ints, JAX shapes), networks deeper than MAX_LAYERS (found by
    # tests/runtime/test_config_fuzz.py: TypeError, MemoryError)
    ("env.overrides.max_episode_steps", 2**31,
     "env.overrides.max_episode_steps=2147483648: must be an integer <= 2147483647"),
    ("deploy.seq_len", 2**63, "deploy.seq_len=9223372036854775808: must be an integer <= "),
    ("behavior.actor_layers", 2**31 - 1,
     r"behavior.actor_layers=2147483647: must be an integer in \[1, 1024\]"),
    ("disag.layers", 1025, r"disag.layers=1025: must be an integer in \[1, 1024\]"),
    # rates, probabilities and scales
    ("model.lr", 0.0, "model.lr=0.0: must be > 0"),
    ("model.lr", math.nan, "model.lr=nan: must be finite"),
    ("behavior.discount", 1.5, r"behavior.discount=1.5: must be in \[0.0, 1.0\]"),
    ("cascade.diversity_scale", 2.0, r"cascade.diversity_scale=2.0: must be in \[0.0, 1.0\]"),
    ("behavior.actor_ent", -1e-3, "behavior.actor_ent=-0.001: must be >= 0"),
    ("seed", 2**21, r"seed=2097152: must be an integer in \[0, 1048576\]"),  # env seeds < 2**31
])
def test_ranges_name_field_value_and_allowed_range(field, value, message):
    config = cascade_config("smoke")
    *blocks, name = field.split(".")
    target = config
    for block in blocks:
        target = target[block]
    target[name] = value
    with pytest.raises(workdir.UserError, match=message):
        workdir.check_ranges(config)


def test_every_preset_passes_its_ranges():
    for preset in ("smoke", "cpu", "paper", "cpu_walker", "paper_crafter"):
        workdir.check_ranges(cascade_config(preset))
    for preset in ("smoke", "cpu", "paper_v2"):
        workdir.check_ranges(tdmpc_config(preset))


def test_loss_weights_are_not_probabilities():
    config = cascade_config("smoke")
    config.model.loss_scales.discount = 5.0   # a weight, not behavior.discount
    workdir.check_ranges(config)


def test_saved_config_must_match_except_extendable_fields(tmp_path):
    config = cascade_config("smoke")
    save_config(config, str(tmp_path))
    workdir.check_saved_config(config, str(tmp_path))          # same config: resumes
    other = ml_collections.ConfigDict(config.to_dict())
    other.seed, other.cascade.diversity_scale = 1, 0.5
    with pytest.raises(workdir.UserError) as e:
        workdir.check_saved_config(other, str(tmp_path))
    assert "cascade.diversity_scale: 0.1 -> 0.5; seed: 0 -> 1" in str(e.value)
    assert "\n" not in str(e.value)
    longer = ml_collections.ConfigDict(config.to_dict())
    longer.deploy.eval_deployments = "all"
    workdir.check_saved_config(longer, str(tmp_path), extendable=("deploy.eval_deployments",))
    with pytest.raises(workdir.UserError, match="deploy.eval_deployments: 'last' -> 'all'"):
        workdir.check_saved_config(longer, str(tmp_path))


def test_a_block_added_later_matches_saved_runs_only_at_its_defaults(tmp_path):
    from jaxwm.agents.dreamer.config import get_config as dreamer_config
    from jaxwm.agents.dreamer.train import ADDED_BLOCKS
    config = dreamer_config("smoke")
    older = ml_collections.ConfigDict(config.to_dict())
    del older["reversibility"]              # a run saved before the block existed
    save_config(older, str(tmp_path))
    workdir.check_saved_config(config, str(tmp_path), added=ADDED_BLOCKS)   # resumes
    with pytest.raises(workdir.UserError, match="reversibility.beta: '<absent>' -> 0.7"):
        workdir.check_saved_config(config, str(tmp_path))   # without `added`: refused
    config.reversibility.penalty = 0.1      # not how the saved run behaved
    with pytest.raises(workdir.UserError, match="reversibility.penalty: '<absent>' -> 0.1"):
        workdir.check_saved_config(config, str(tmp_path), added=ADDED_BLOCKS)


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not a readable config.json"),
    ("[1, 2]", "is not a config of this binary"),
    (json.dumps({"train": {"steps": 1}, "dataset": {"path": "x"}}),
     r"is not a config of this binary \(other fields\)"),
])
def test_foreign_or_garbage_config_json_is_refused(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(workdir.UserError, match=message):
        workdir.check_saved_config(cascade_config("smoke"), str(tmp_path))
    assert (tmp_path / "config.json").read_text() == content


def test_unknown_env_or_override_is_a_user_error(tmp_path):
    config = cascade_config("smoke")
    config.env.name = "MiniGrid-FourRoom-v0"
    with pytest.raises(workdir.UserError, match="Unknown environment name.*FourRooms"):
        workdir.check_values(config)
    config = cascade_config("smoke")
    config.env.overrides.obs = "pixels"
    with pytest.raises(workdir.UserError, match="override obs='pixels' is invalid"):
        workdir.check_values(config)
    assert not list(tmp_path.iterdir())
