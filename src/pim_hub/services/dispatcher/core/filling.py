"""Adaptive batch filling: whether a busy lane waits a little longer for a fuller batch.

A batching driver (`handle_batch`, the Magento bulk API) pays about the same for a request
of 1 job or of 50: the bulk POSTs, their status polls, the SKU search, the guard's round
trips. A lane that sends whatever is ready the moment a call slot is free makes many small
concurrent batches under load, so more requests and more CPU per job for the same work
(docs/performance.md, "Fuller batches").

So while the lane is busy (at least one call in flight) and fewer jobs are ready than a
batch holds, the lane waits for more, for at most `fill_s`, but only as long as more are
coming:
- after a full batch (a backlog: the next one can fill as soon as room frees), it waits
  for the batch to fill or the bound to pass;
- otherwise it watches the jobs that become ready: once it has watched for `window_s` (the
  linger, what a busy lane always waited), it waits on only while the rate seen so far
  would fill the batch before the bound. A lone job, or a stream too slow to fill a batch
  in time (a few live edits a second), goes after that first window: today's latency.
An idle lane (nothing in flight) never waits: the target has nothing to do meanwhile.

Pure: the caller counts and gives the time.
"""

from __future__ import annotations


def keep_filling(
    *,
    ready: int,
    want: int,
    running: int,
    waited_s: float,
    fill_s: float,
    window_s: float,
    arrived: int,
    backlog: bool,
) -> bool:
    """Whether a lane with `ready` jobs waits on for a batch of `want`.

    `waited_s`: how long it has waited so far for this batch; `arrived`: the jobs that
    became ready meanwhile; `backlog`: the lane's previous batch was full.
    """
    if ready >= want or running <= 0 or waited_s >= fill_s:
        return False
    if backlog or waited_s < window_s:
        return True
    # Jobs at the rate seen so far, in the time left: enough to fill the batch?
    return arrived * (fill_s - waited_s) >= (want - ready) * waited_s
