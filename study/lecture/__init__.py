"""The lecture's toy problem, its figures, and the numbers its claims are judged on."""
