"""Allow ``python -m hpcjupyter``."""

from hpcjupyter.cli import main

main()
