"""Deployment strategies of a population of B policies on Binary Tree MDPs (CASCADE paper, App. D).

Every round (a deployment) runs B policies, each for one episode in the true MDP. Each policy is
planned by Thompson sampling: draw a model from the posterior (`binary_tree.sample_model`), then
act greedily in it for the reward-free count bonus b(n) = alpha0 / (2 alpha0 + n), the posterior
error of an (s, a) visited n times (the quantity the eps criterion bounds). The strategies differ
only in what the B policies of a round know about each other:

- single_policy_batch (SPB): one sampled policy, executed B times (deterministic dynamics: B times
  the same path).
- sequential: policy i is planned after the real data of policies 1..i-1 updated the posterior (B
  policy updates per round; not deployment-efficient, the ideal the others are compared to).
- cascade_ts (CASCADE-TS): no real data within a round; policy i draws its own model and is
  planned in it with bonuses from the real counts plus the imaginary visits of policies 1..i-1 in
  that model (their expected occupancies in it) -- the greedy cascade. Computing the earlier
  policies' visits in policy i's own model keeps its imagination self-consistent: this beat both
  accumulating each policy's visits in its own model and one model shared by the round.

The paper's Binary Tree lemma: rounds to accuracy eps satisfy
T(sequential) <= T(cascade_ts) <= T(SPB). Every episode visits exactly one of the 2^d deepest
(s, a), so T >= n(eps) 2^d / B for any strategy, and T(SPB) >= 2^d when n(eps) = 1. Because an
untried (s, a) always leads into a never-visited subtree, a single Thompson-sampling policy with
this bonus reaches a fresh deepest (s, a) in every episode: Sequential and SPB attain these bounds
(almost) exactly, and CASCADE-TS lies just above Sequential (experiments/paper/cascade_ts.py).
Policy i of a round always uses the key `fold_in(round_key, i)`, so with B = 1 the three strategies
make identical draws and take identical numbers of rounds.
"""
import functools

import chex
import jax
import jax.numpy as jnp

from jaxwm.tabular import binary_tree
from jaxwm.tabular import planning

STRATEGIES = ("sequential", "cascade_ts", "single_policy_batch")


def count_bonus(visits: jax.Array, alpha0: float) -> jax.Array:
    """f32[S, 2] bonus alpha0 / (2 alpha0 + n) for (real + imaginary) visit counts n: f32[S, 2]."""
    chex.assert_rank(visits, 2)
    return alpha0 / (2.0 * alpha0 + visits)


def plan(model: jax.Array, visits: jax.Array, *, alpha0: float, depth: int) -> jax.Array:
    """Greedy policy in a (sampled) model for the count bonus of `visits`.

    Args:
        model: f32[S, 2] left-child probabilities (a posterior sample).
        visits: f32[S, 2] real (+ imaginary) visit counts entering the bonus.
        alpha0: Beta prior parameter.
        depth: tree depth.
    Returns:
        i32[S] greedy actions.
    """
    chex.assert_equal_shape([model, visits])
    q, _ = planning.value_iteration(model, count_bonus(visits, alpha0), depth)
    return planning.greedy_policy(q)


def deployment_round(key, counts, true_left, population, *, strategy: str, alpha0: float,
                     depth: int, max_population: int) -> jax.Array:
    """One deployment of `population` (B) policies; returns the updated f32[S, 2, 2] counts.

    Args:
        key: the round's PRNG key; policy i draws its model with `fold_in(key, i)`.
        counts: f32[S, 2, 2] real transition counts before the round.
        true_left: f32[S, 2] the true MDP.
        population: i32[] number of policies B (traced, so sweeps over B share one compile).
        strategy: one of STRATEGIES.
        alpha0, depth: as in `plan`.
        max_population: static capacity (>= B) of CASCADE-TS's buffer of the round's policies.
    """
    def thompson_model(i, counts):
        return binary_tree.sample_model(jax.random.fold_in(key, i), counts, alpha0)

    def execute(policy):  # f32[S, 2] real visits: the executed root-to-leaf path
        return planning.occupancy(true_left, policy, depth)

    plan_ = functools.partial(plan, alpha0=alpha0, depth=depth)
    visits = binary_tree.visit_counts(counts)
    if strategy == "single_policy_batch":
        policy = plan_(thompson_model(0, counts), visits)
        batch_visits = jnp.asarray(population, counts.dtype) * execute(policy)
        return binary_tree.update_counts(counts, batch_visits, true_left)
    if strategy == "sequential":
        def sequential_step(i, counts):
            policy = plan_(thompson_model(i, counts), binary_tree.visit_counts(counts))
            return binary_tree.update_counts(counts, execute(policy), true_left)
        return jax.lax.fori_loop(0, population, sequential_step, counts)
    if strategy == "cascade_ts":
        def cascade_step(i, carry):
            policies, executed = carry  # i32[max_population, S]: rows < i are policies 1..i-1
            model = thompson_model(i, counts)
            imagined = jax.vmap(planning.occupancy, (None, 0, None))(model, policies, depth)
            earlier = (jnp.arange(max_population) < i)[:, None, None]
            policy = plan_(model, visits + jnp.where(earlier, imagined, 0.0).sum(0))
            return policies.at[i].set(policy), executed + execute(policy)
        policies = jnp.zeros((max_population, counts.shape[0]), jnp.int32)
        _, executed = jax.lax.fori_loop(
            0, population, cascade_step, (policies, jnp.zeros_like(visits)))
        return binary_tree.update_counts(counts, executed, true_left)
    raise ValueError(f"unknown strategy {strategy!r}; allowed: {STRATEGIES}")


def rounds_to_accuracy(key, true_left, population, *, strategy: str, depth: int, alpha0: float,
                       eps: float, max_rounds: int, max_population: int):
    """Deployment rounds until the posterior-mean model has max error <= eps (a `lax.while_loop`).

    Args:
        key: PRNG key of the run; round r uses `fold_in(key, r)`.
        true_left: f32[S, 2] the true MDP.
        population: i32[] policies per round B.
        strategy, depth, alpha0: as in `deployment_round`.
        eps: target accuracy (see `binary_tree.is_learned`).
        max_rounds: cap on the number of rounds.
        max_population: static upper bound on B (see `deployment_round`).
    Returns:
        rounds: i32[] rounds run (= max_rounds if capped).
        learned: bool[] whether accuracy eps was reached (False means capped).
    """
    chex.assert_shape(true_left, (binary_tree.num_internal(depth), 2))
    round_fn = functools.partial(deployment_round, strategy=strategy, alpha0=alpha0, depth=depth,
                                 max_population=max_population)

    def not_done(carry):
        rounds, counts = carry
        return (rounds < max_rounds) & ~binary_tree.is_learned(counts, true_left, alpha0, eps)

    def one_round(carry):
        rounds, counts = carry
        return rounds + 1, round_fn(jax.random.fold_in(key, rounds), counts, true_left, population)

    rounds, counts = jax.lax.while_loop(
        not_done, one_round, (jnp.int32(0), binary_tree.prior_counts(depth)))
    return rounds, binary_tree.is_learned(counts, true_left, alpha0, eps)


def default_max_rounds(depth: int, eps: float, alpha0: float) -> int:
    """A generous cap: 20 n(eps) 2^depth, 20x the episodes a single policy needs at best."""
    return 20 * max(1, binary_tree.visits_for_accuracy(eps, alpha0)) * 2**depth


def sweep(key: jax.Array, population: int, *, strategy: str, depth: int, num_mdps: int,
          num_seeds: int, alpha0: float = 0.1, eps: float = 0.1, max_rounds: int = 0,
          max_population: int = 8):
    """Rounds to accuracy for `num_mdps` random MDPs x `num_seeds` agent seeds (vmapped, jitted).

    The same `key` gives the same MDPs and agent seeds for every strategy and population, so
    strategies are compared on common random numbers. All populations <= `max_population` share
    one compiled program per (strategy, depth).

    Args:
        key: PRNG key of the sweep cell.
        population: policies per round B, 1 <= B <= max_population.
        strategy, depth, alpha0, eps: as in `rounds_to_accuracy`.
        num_mdps: M random Binary Tree MDPs of this depth.
        num_seeds: S agent seeds per MDP.
        max_rounds: cap on rounds; 0 means `default_max_rounds`.
        max_population: static capacity for B.
    Returns:
        rounds: i32[M, S]; learned: bool[M, S] (False where the cap was hit).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; allowed: {STRATEGIES}")
    if not 1 <= population <= max_population:
        raise ValueError(
            f"population must be in [1, max_population={max_population}], got {population}")
    binary_tree.visits_for_accuracy(eps, alpha0)  # validates eps and alpha0
    return _sweep(key, jnp.int32(population), strategy=strategy, depth=depth, num_mdps=num_mdps,
                  num_seeds=num_seeds, alpha0=alpha0, eps=eps,
                  max_rounds=max_rounds or default_max_rounds(depth, eps, alpha0),
                  max_population=max_population)


# LLVM optimization level 1 compiles these small loop-heavy programs ~3x faster than the default
# with the same CPU run time.
@functools.partial(jax.jit, static_argnames=(
    "strategy", "depth", "num_mdps", "num_seeds", "alpha0", "eps", "max_rounds", "max_population"),
    compiler_options={"xla_backend_optimization_level": 1})
def _sweep(key, population, *, strategy, depth, num_mdps, num_seeds, alpha0, eps, max_rounds,
           max_population):
    key_mdp, key_agent = jax.random.split(key)
    mdps = jax.vmap(binary_tree.sample_mdp, in_axes=(0, None))(
        jax.random.split(key_mdp, num_mdps), depth)
    run = functools.partial(rounds_to_accuracy, population=population, strategy=strategy,
                            depth=depth, alpha0=alpha0, eps=eps, max_rounds=max_rounds,
                            max_population=max_population)
    over_seeds = jax.vmap(lambda true_left, k: run(k, true_left), in_axes=(None, 0))
    over_mdps = jax.vmap(over_seeds, in_axes=(0, None))
    return over_mdps(mdps, jax.random.split(key_agent, num_seeds))
