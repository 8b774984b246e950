"""Runtime helpers shared by the services (not the algorithm: that is `azr.core`)."""
