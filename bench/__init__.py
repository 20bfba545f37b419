"""`make bench`: the project against its peers, side by side, in one run on the same cores.

Entry point: ``python -m bench.run [--quick]``. Each contender runs in its own
process (``python -m bench.contenders NAME``) so its peak memory (RSS of the
whole process tree, Ray workers included) is its own. See bench/README.md.
"""
