"""``python -m hil`` is the ``medtwin`` command."""

from hil.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
