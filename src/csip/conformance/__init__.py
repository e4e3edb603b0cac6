"""The conformance harness: procedures as data, the device-mode runner, results and server mode."""
