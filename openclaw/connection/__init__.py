"""Connection handling: the Autobahn protocol, the connect handshake, and outbound buffering."""
