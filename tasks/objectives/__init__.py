"""One file per paper: everything that makes that objective what it is."""
