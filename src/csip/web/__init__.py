"""Web faces of csip."""
