"""Fault injection: the real leadbot process against stand-ins that misbehave on command, killed
with SIGKILL at random moments, and the delivery invariant checked afterwards (harness.py)."""
