"""End-to-end benchmarks of the serving graph: ``python -m bench.run_all`` (``make bench``).

wrk drives the HTTP service on loopback; each workload is compared, in the same invocation,
with the model called directly in one process (the offline ceiling) and with a plain FastAPI
process built the way the design document sketches it (one model call per request).
"""
