"""The GKE metadata server (Compute Engine metadata v1, as GKE serves it to pods), which
`keyless pod run` starts per node (not a mount of the app): its answers are
keyless.api.metadata.server's, its HTTP/1.1 keyless.api.metadata.transport's."""
