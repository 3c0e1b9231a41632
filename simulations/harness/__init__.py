"""A real Prometheus with a scrape target we control (prometheus.py) and kmock, an HTTP
Kubernetes API emulator, in a thread (kmock.py): what the adapter tests and the scale
benchmark (simulations/bench_scale.py) run the daemon against. kmock is a test dependency
(`pip install -e .[test]`, which ./dev does)."""
