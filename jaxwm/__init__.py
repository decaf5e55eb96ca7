"""jaxwm: world models for reinforcement learning in JAX/Flax."""
__version__ = "0.1.0"
