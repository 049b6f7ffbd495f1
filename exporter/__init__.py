"""pizza-probe: a Prometheus exporter and synthetic prober for JWT Pizza deployments."""

__version__ = "0.1.0"
