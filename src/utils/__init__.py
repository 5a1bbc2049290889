"""Helpers shared by the scripts, the engine and the tests; each module's docstring says what it is for."""
