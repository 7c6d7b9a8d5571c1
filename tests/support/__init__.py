"""Code the tests and benchmarks share: fakes, peers, harnesses and the data they replay.

None of it ships in the ``dasan`` package; ``ivr/`` keeps only what a command uses.
"""
