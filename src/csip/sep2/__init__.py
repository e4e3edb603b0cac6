"""IEEE 2030.5 on the wire: schemas, hardened parsing, rendering, hrefs and paging."""
