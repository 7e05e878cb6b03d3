"""Pure rules: the premium calendar, money, channels and the decision functions (no I/O)."""
