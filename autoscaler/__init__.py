"""The autoscaler daemon: configuration, adapters (Prometheus, Kubernetes, recorded traces),
the controller that runs one tick, and the command line. Decisions come from `policies`."""
