"""Long-lived parts of the gateway, each a Twisted service in the tree ``makeService`` builds."""
