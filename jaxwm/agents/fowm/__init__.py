"""FOWM: offline-to-online finetuning of TD-MPC world models (Feng et al., CoRL 2023)."""
