"""The doctor over HTTP (not a Google API), mounted at /doctor: keyless.api.doctor.rest; the
analysis is keyless.doctor's."""

from keyless.api.doctor.rest import routes

__all__ = ["routes"]
