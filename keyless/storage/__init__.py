"""Cloud Storage: buckets, objects and their bytes (https://cloud.google.com/storage/docs/json_api).

The domain never sees HTTP: `keyless.api.storage` parses the JSON API and renders its answers.
"""
