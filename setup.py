"""jaxwm: world models for reinforcement learning in JAX/Flax (CASCADE and its neighbours)."""
from setuptools import find_packages, setup

setup(
    name="jaxwm",
    version="0.1.0",
    description="JAX/Flax world models for RL: CASCADE, Dreamer, Plan2Explore, TD-MPC, FOWM, ...",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["jaxwm", "jaxwm.*"]),
    python_requires=">=3.11",
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax",
        "chex",
        "distrax",
        "envpool>=1.2.5",
        "dm-control>=1.0.20",
        # dm-control 1.0.50 breaks with mujoco 4.0 ('MjModel' has no attribute 'flex_vertedge').
        "mujoco==3.17.0",
        "orbax-checkpoint",
        "absl-py",
        "ml-collections",
        "tensorboardX",
        "matplotlib",
        "imageio",
        "tqdm",
        "rliable",
        # rliable's bootstrap imports arch, whose 7.x breaks with pandas 3 (deprecate_kwarg).
        "pandas<3",
        "numpy",
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "hypothesis", "xminigrid>=0.9.3", "craftax>=1.5",
                 "minatar",   # the numpy reference of the JAX-native MinAtar games
                 "gym-pusht>=0.1.5"],   # the Push-T goal task (jaxwm.envs.pusht)
        # JAX-native MiniGrid layouts and Craftax Classic ('xminigrid:...', 'craftax:...')
        "jax-envs": ["xminigrid>=0.9.3", "craftax>=1.5"],
        # Push-T, a goal-reaching pixel task of DINO-WM (jaxwm.envs.pusht, 'PushT-v0')
        "pusht": ["gym-pusht>=0.1.5"],
        # DayDreamer's Ray actors (runner.backend='ray'); also the slow Ray test
        "distributed": ["ray>=2.40"],
    },
)
