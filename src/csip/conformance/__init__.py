"""The conformance harness: procedures as data, the device-mode runner, results, server mode
and the OEM simulator."""
