"""A Python client for the gateway: embed it in a Twisted program, or run it as the CLI."""
from .client import ClientOptions, GatewayCallError, GatewayClient

__all__ = ["ClientOptions", "GatewayCallError", "GatewayClient"]
