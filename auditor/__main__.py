"""`python -m auditor` is the `auditor` command (also what torchrun launches)."""

from auditor.cli import main

if __name__ == "__main__":
    main()
