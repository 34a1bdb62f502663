"""The web console at /console/: the identity graph, the audit timeline and the doctor's explain,
acting as the signed-in principal through the same Authorizer and permissions as the APIs."""
