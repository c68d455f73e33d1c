import sys

from gradconf.cli import main  # absolute: `python -m harness` from the repo root must not load a second copy

sys.exit(main())
