"""``python -m scalable``: the same as the ``scalable`` command."""

from scalable.cli.app import run

if __name__ == "__main__":
    run()
