"""``python -m experiments.bench [--quick]``: see :mod:`experiments.bench.run`."""

from experiments.bench.run import main

main()
