"""The conformance harness: procedures, the device-mode runner, results and the OEM simulator."""
