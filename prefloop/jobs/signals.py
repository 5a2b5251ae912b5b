"""`job_finished` is sent once a job ends (succeeded, failed, cancelled, or reaped as failed).

Apps that keep their own state for a job (e.g. a reward-model version "training") listen to it to
mark that state failed when a worker dies. Receivers run in the process that ended the job (the
worker, or whoever ran the reaper); their errors are logged, never raised.
"""

from django.dispatch import Signal

job_finished = Signal()  # sender=Job, job=<Job>
