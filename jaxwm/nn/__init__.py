"""Flax linen building blocks shared by all world models (used only through init/apply)."""
from jaxwm.nn.blocks import (ACTIVATIONS, CNN_IMPLS, MLP, ConvDecoder, ConvEncoder,
                             LayerNormGRUCell, get_activation, simnorm)

__all__ = ["ACTIVATIONS", "CNN_IMPLS", "MLP", "ConvDecoder", "ConvEncoder", "LayerNormGRUCell",
           "get_activation", "simnorm"]
