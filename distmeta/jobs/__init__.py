"""Running distmeta on a cluster from elsewhere: Ray's Job Submission API.

- `submission`: `distmeta submit train|tune`: validate here, send the command and the working directory.
- `client`: the job server connection, job details and logs, with errors naming the address or the job.
- `local_cluster`: a head and N nodes on this machine, on loopback, stopped without touching other Ray processes.

Nothing here imports Ray at package import, so the CLI starts fast.
"""

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
"""The job server of a cluster started on this machine with Ray's default dashboard port."""
