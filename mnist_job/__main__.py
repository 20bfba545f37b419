from mnist_job.cli.commands import console_main

console_main()
