"""Names in Cloud Logging: log names (`projects/P/logs/LOG_ID`, the id URL-encoded), sink and
exclusion ids, sink destinations and writer identities, as
https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry (logName) and
https://cloud.google.com/logging/docs/reference/v2/rest/v2/projects.sinks define them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from keyless.errors import InvalidArgument
from keyless.storage.names import validate_bucket_name

SERVICE = "logging.googleapis.com"
MAX_LOG_ID = 511  # "must be less than 512 characters long"
LOG_ID = re.compile(r"^[A-Za-z0-9/_.\-]+$")  # alphanumerics, forward-slash, underscore, hyphen, period
# Sink and exclusion ids: up to 100 of letters, digits, underscores, hyphens and periods, the
# first alphanumeric.
CONFIG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
PROJECT_LOG = re.compile(r"^projects/([^/]{1,100})/logs/(.+)$", re.DOTALL)
PUBSUB_TOPIC = re.compile(r"^pubsub\.googleapis\.com/projects/([a-z][a-z0-9-]{4,28}[a-z0-9])/topics/"
                          r"([A-Za-z][A-Za-z0-9\-_.~+%]{2,254})$")
STORAGE_PREFIX = "storage.googleapis.com/"
# Before writer identities were unique, every project sink wrote as this one identity.
LEGACY_WRITER = "serviceAccount:cloud-logs@system.gserviceaccount.com"


_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")


def camel(body: dict[str, Any]) -> dict[str, Any]:
    """A message's field names in lowerCamel: Google's JSON mapping accepts the proto names too
    (`dry_run`, `log_name`: google-cloud-logging sends those). Only for messages, never for maps
    (labels) or payloads, whose keys are data."""
    return {(re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), k) if _SNAKE.match(k) else k): v
            for k, v in body.items()}


@dataclass(frozen=True)
class LogName:
    project: str  # as given: an id or a number
    log_id: str  # decoded

    def canonical(self, project_id: str) -> str:
        return f"projects/{project_id}/logs/{quote(self.log_id, safe='')}"


def parse_log_name(value: object, where: str = "logName") -> LogName:
    """A project's log name; the id may come encoded (`%2F`) or not. A leading slash is dropped, as
    Google drops it "for backward compatibility"."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{where} is required: projects/PROJECT_ID/logs/LOG_ID.")
    text = value[1:] if value.startswith("/") else value
    m = PROJECT_LOG.match(text)
    if m is None:
        raise InvalidArgument(f"Invalid log name '{value[:300]}' in {where}: Keyless keeps logs in projects, "
                              "projects/PROJECT_ID/logs/LOG_ID.")
    log_id = unquote(m.group(2))
    if len(log_id) > MAX_LOG_ID:
        raise InvalidArgument(f"Invalid log name in {where}: the log id must be less than 512 characters long.")
    if not LOG_ID.match(log_id):
        raise InvalidArgument(f"Invalid log name '{value[:300]}' in {where}: a log id may only contain letters, "
                              "digits, forward-slash, underscore, hyphen and period.")
    return LogName(m.group(1), log_id)


def check_config_id(value: object, kind: str) -> str:
    """A sink's or an exclusion's id."""
    if not isinstance(value, str) or not CONFIG_ID.match(value):
        shown = value[:120] if isinstance(value, str) else value
        raise InvalidArgument(f"Invalid {kind} name '{shown}': {kind} names are limited to 100 characters and "
                              "can include only letters, digits, underscores, hyphens, and periods; the first "
                              "character has to be alphanumeric.")
    return value


@dataclass(frozen=True)
class Destination:
    kind: str  # "storage" or "pubsub"
    bucket: str = ""
    topic: str = ""  # projects/P/topics/T


def parse_destination(value: object) -> Destination:
    """A sink's destination: a Cloud Storage bucket or a Pub/Sub topic (keyless.cloudlogging.export);
    other kinds are refused."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument("Sink destination is required.")
    if value.startswith(STORAGE_PREFIX):
        bucket = value[len(STORAGE_PREFIX):]
        try:
            validate_bucket_name(bucket)
        except InvalidArgument as exc:
            raise InvalidArgument(f"Invalid sink destination '{value[:300]}': not a Cloud Storage bucket name.") \
                from exc
        return Destination("storage", bucket=bucket)
    m = PUBSUB_TOPIC.match(value)
    if m is not None:
        return Destination("pubsub", topic=value.split("/", 1)[1])
    raise InvalidArgument(f"Invalid sink destination '{value[:300]}': Keyless routes logs to "
                          "storage.googleapis.com/BUCKET and accepts pubsub.googleapis.com/projects/P/topics/T.")


def writer_identity(project_number: str, unique: bool) -> str:
    """The writerIdentity a project's sink gets: the project's Logging service agent when
    uniqueWriterIdentity is set (gcloud always sets it), else the legacy shared identity."""
    if unique:
        return f"serviceAccount:service-{project_number}@gcp-sa-logging.iam.gserviceaccount.com"
    return LEGACY_WRITER
