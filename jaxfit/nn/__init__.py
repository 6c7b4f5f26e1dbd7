"""PyTorch-semantics building blocks in pure JAX: initialisation, layers, losses, optimisers.

Everything that decides whether jaxfit trains the way PyTorch does lives here, and nowhere else;
`parity_tests/` is its specification.
"""
