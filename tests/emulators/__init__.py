"""HTTP emulators of remote APIs, served on 127.0.0.1 for the real client libraries."""
