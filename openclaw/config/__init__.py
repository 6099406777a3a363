"""Reading the gateway's JSON5 configuration file and turning it into settings."""
