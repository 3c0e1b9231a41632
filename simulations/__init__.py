"""Offline use of the controller: replay over recorded metric traces (and, later, closed-loop
simulation). Imports `autoscaler` and `policies`; nothing imports this package back."""
