"""Secret Manager (secretmanager.googleapis.com v1): secrets, their versions and payloads.

Follows https://cloud.google.com/secret-manager/docs/reference/rest: the domain here never sees
HTTP; keyless/api/secretmanager/rest.py parses the wire format and renders the answers.
"""
