"""Performance benchmark of the engine (issue 7); run ``python -m experiments.bench --help``."""
