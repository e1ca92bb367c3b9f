"""``python -m attngan`` (also what ``torchrun -m attngan`` runs)."""

from .cli import main

if __name__ == "__main__":
    main()
