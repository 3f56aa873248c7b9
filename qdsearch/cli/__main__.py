"""``python -m qdsearch.cli``: the command line (:func:`qdsearch.cli.main`)."""

from qdsearch.cli.app import _exit, main

if __name__ == "__main__":
    _exit(main())
