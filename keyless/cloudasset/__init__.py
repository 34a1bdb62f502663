"""Cloud Asset Inventory (cloudasset.googleapis.com v1): IAM policy analysis and search over the
policies Keyless holds (https://cloud.google.com/asset-inventory/docs/reference/rest, issue #20).
The analysis is the doctor's (keyless.doctor.access); this package only scopes it and names what
it finds as Cloud Asset Inventory does."""
