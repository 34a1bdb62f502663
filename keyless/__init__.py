"""Keyless: an open implementation of Google Cloud Workload Identity Federation.

One server speaks Google's own wire formats (IAM, Resource Manager, STS, IAM Credentials, ...)
so that gcloud and Google's client libraries work against it unmodified.
"""

__version__ = "0.1.0"
