"""Operations: a local Prometheus for the API and a bounded loopback traffic generator."""
