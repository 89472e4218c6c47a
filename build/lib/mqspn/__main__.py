"""`python -m mqspn` runs the command line."""
from mqspn.cli import main

raise SystemExit(main())
