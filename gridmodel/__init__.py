"""The grid twin: network models, measurements → state estimation, power flow, violations."""
