"""The HTTP side of the single port: the root dispatcher, the Site, and the Klein app."""
