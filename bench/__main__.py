"""``python -m bench`` (``make bench``): every ``bench/bench_*.py`` ``main()``, tables printed."""

from bench.runner import main

main()
