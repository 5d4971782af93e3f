"""``python -m cellvol``: the ``cellvol`` command."""

from cellvol.cli import main

if __name__ == "__main__":
    main()
