import sys

from codybatch.cli import main

sys.exit(main())
