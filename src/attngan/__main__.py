"""``python -m attngan`` (also what ``torchrun -m attngan`` runs)."""

from .cli import entry

if __name__ == "__main__":
    entry()
