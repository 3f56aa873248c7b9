"""Components defined outside the package, as a user would add them (one file each)."""
