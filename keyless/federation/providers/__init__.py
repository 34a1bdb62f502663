"""Identity-provider plugins for STS token exchange, one module per kind of external credential.

Each follows SPIRE's node-attestor shape: one narrow call, `verify(subject_token, ...) -> assertion`,
whose result is the CEL `assertion` that attribute mappings and conditions read.
"""
