from tests.support.kmock_harness import kmock_cluster  # noqa: F401  (fixture)
