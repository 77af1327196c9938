"""The lecture's toy problem and its figures."""
