"""``python -m qdsearch``: the command line (:mod:`qdsearch.cli`)."""

from qdsearch.cli import _exit, main

if __name__ == "__main__":
    _exit(main())
