import sys

from mnist_job.cli import main

sys.exit(main())
