"""Pub/Sub (pubsub.googleapis.com v1): topics, subscriptions, messages, snapshots.

Follows https://cloud.google.com/pubsub/docs/reference/rest: the domain here never sees HTTP;
keyless/api/pubsub/ parses the wire formats (REST and gRPC) and renders the answers.
"""
