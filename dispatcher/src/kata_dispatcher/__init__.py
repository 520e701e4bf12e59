"""kata-dispatcher: the job-mode dispatcher of kata-deploy (one paced Job per node)."""

__version__ = "0.1.0"
