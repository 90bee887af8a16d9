"""`python -m dlrun ...` (and `torchrun -m dlrun ...`): the same as the `dlrun` command."""

from dlrun.cli import main

if __name__ == "__main__":
    main()
