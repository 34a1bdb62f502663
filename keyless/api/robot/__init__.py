"""Service accounts' public certificates (www.googleapis.com/robot/v1), mounted at /robot:
keyless.api.robot.rest."""

from keyless.api.robot.rest import routes

__all__ = ["routes"]
