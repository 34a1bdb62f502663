"""Cloud Logging's domain beyond the audit log (issue #20): entries written with entries.write,
log deletion, sinks that route entries to a destination, and the _Default sink's exclusions
(https://cloud.google.com/logging/docs/reference/v2/rest). Written entries are stored in the
audit log's table (keyless.store.models.AuditEntry), so entries.list, `gcloud logging read`,
retention and the filter language (keyless.audit.filter) treat them and audit entries alike."""
