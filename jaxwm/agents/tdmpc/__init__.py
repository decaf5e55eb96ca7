"""TD-MPC and TD-MPC2: TOLD world models planned with MPPI (Hansen et al. 2022, 2024)."""
