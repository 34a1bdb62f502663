"""Pub/Sub API (pubsub.googleapis.com v1), mounted at /pubsub and as Google's host: REST in
keyless.api.pubsub.rest, gRPC (google-cloud-pubsub's default transport, with StreamingPull) in
keyless.api.pubsub.grpc (issue #20)."""
