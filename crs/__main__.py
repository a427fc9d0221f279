"""`python -m crs`: the same command line as the `crs` script."""

from crs.cli import main

main()
