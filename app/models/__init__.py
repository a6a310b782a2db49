"""models domain."""
