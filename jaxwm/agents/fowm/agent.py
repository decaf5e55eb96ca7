"""FOWM agent: the TD-MPC agent with FOWM's losses, sampling and planner (composition only).

Feng et al., CoRL 2023: the TOLD model gains V(z) trained by expectile regression (IQL) and the
policy prior is trained by AWR with clamped weights (`told.model_config('fowm')`); offline,
batches come from the dataset only; online, half of every batch comes from the dataset and half
from the online buffer (`config.batch_sizes`), and MPPI subtracts lambda * std_e Q_e from every
reward and the terminal value (`planner.uncertainty_penalty`).
"""
import ml_collections

from jaxwm.agents.fowm import config as fowm_config
from jaxwm.agents.tdmpc.agent import Agent, AgentState

__all__ = ["Agent", "AgentState", "make_agent"]


def make_agent(config: ml_collections.ConfigDict, obs_size: int, action_size: int) -> Agent:
    """Validates a FOWM config and builds its agent."""
    fowm_config.check_config(config)
    return Agent(config, obs_size, action_size)
