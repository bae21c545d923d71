"""Redis-backed pieces shared by the gateway and the analyzer:
job records, the bridge cache, job submission."""
