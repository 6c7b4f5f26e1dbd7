"""Throughput benchmarks: jaxfit against the ways a PyTorch user would train the same networks.

    python -m benchmarks.throughput --quick

`common` holds the workloads, the FLOP count, the machine's matmul rate, memory sampling and the
machine description; `torch_impls` the PyTorch implementations; `throughput` the jaxfit cell, the
driver (one worker process per implementation), the table, the JSON and the plot. See README.md.
"""
