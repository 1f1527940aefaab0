"""``python -m medtwin.hil`` is the ``medtwin`` command."""

from medtwin.hil.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
