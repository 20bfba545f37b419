import sys

from mnist_job.cli.commands import main

sys.exit(main())
