"""CASCADE-TS and the Binary Tree MDP (Xu et al., NeurIPS 2022, App. D): a tabular analogue of
CASCADE comparing deployment strategies of a population of Thompson-sampling policies.

- `binary_tree`: the MDPs, the Beta/Dirichlet posterior over transitions, the accuracy criterion.
- `planning`: value iteration (`lax.scan`) and occupancies in a tabular tree model.
- `strategies`: SinglePolicyBatch, Sequential and CASCADE-TS; rounds to accuracy; vmapped sweeps.
"""
from jaxwm.tabular import binary_tree
from jaxwm.tabular import planning
from jaxwm.tabular import strategies
