"""`python -m spvit_deploy`: the same as the `spvit-deploy` command."""
import sys

from .cli import main

sys.exit(main())
