"""What every other part stands on: settings (params and runtime), errors and exit codes, atomic files,
confined paths and what is printed. Imports nothing else of the package."""
