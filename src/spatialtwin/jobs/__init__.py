"""Jobs that can leave the process: a kind name plus a JSON payload, run by any process.

`queue.JobQueue` is the protocol (`submit(kind, payload) -> job`, `status(job_id)`, progress
reported by the running kind); `queue.StoreJobQueue` submits and reads jobs as store records,
`runner.JobRunner` claims and runs one (owner + heartbeat lease), and
`runner.InProcessJobQueue` runs what it is given in this process and recovers what a stopped
process left; `dramatiq_queue` is the fleet's: servers enqueue on Dramatiq's Redis broker and
`spatialtwin worker --redis` runs the jobs, their records still in the store. Kinds (name ->
function of the payload) are registered in `services/job_kinds.py`; this package imports only
the ground (and Dramatiq, redis-py).
"""
