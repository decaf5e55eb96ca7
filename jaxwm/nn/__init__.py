"""Flax linen building blocks shared by all world models (used only through init/apply)."""
from jaxwm.nn import conv
from jaxwm.nn.blocks import (ACTIVATIONS, MLP, ConvDecoder, ConvEncoder,
                             LayerNormGRUCell, get_activation, simnorm)

__all__ = ["ACTIVATIONS", "MLP", "ConvDecoder", "ConvEncoder", "LayerNormGRUCell",
           "conv", "get_activation", "simnorm"]
