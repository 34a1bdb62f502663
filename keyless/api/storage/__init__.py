"""Cloud Storage (storage.googleapis.com), mounted at /storage, /upload, /download and /resumable:
the JSON API (keyless.api.storage.json_api) with its media uploads and downloads (.media), managed
folders (.folders) and rewrite/copy/compose (.rewrite) over one request shape (.wire), and the XML API
(.xml_api) that V4 signed URLs reach. The domain is keyless.storage."""

from keyless.api.storage.json_api import download_routes, resumable_routes, routes, upload_routes

__all__ = ["download_routes", "resumable_routes", "routes", "upload_routes"]
