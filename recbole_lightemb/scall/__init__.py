"""SCALL (CIKM'24): budgeted width distributions, a fixed-length state, a SAC agent, the planner."""
