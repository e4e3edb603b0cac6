"""OpenADR 3.1.0 wire: request models named as the OpenAPI spec, Problem errors, pure rules."""
