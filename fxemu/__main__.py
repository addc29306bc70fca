"""``python -m fxemu``: the ``fxemu`` command line."""

from .cli import main

if __name__ == "__main__":
    main()
