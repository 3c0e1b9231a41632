"""The lab: the closed-loop simulator (simulate.py, cluster.py, replica.py), the peers it
compares the daemon's policies with (peers/, contenders.py), the standard suite and its reports
(suite.py, report.py), and the benchmarks (bench_*.py).

Not part of the installed product: the wheel carries only `autoscaler` and `policies`, and the
lab runs from a checkout with the lab extra (`pip install -e ".[test,lab]"`, which ./dev setup
does), as `python -m simulations` from the repository root. It imports `autoscaler` and
`policies`, and nothing in them imports it back (an import contract in pyproject.toml, run by
tests/test_import_contracts.py). The scale benchmark also runs the tests' Prometheus and kmock
harnesses (tests/support). Open-loop replay of recorded traces is a product feature, in
autoscaler/replay.py."""
