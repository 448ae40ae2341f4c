"""The embedded local cloud: moto server, the resources and secrets of the topology, the
local Lambda runtime and push service, wired together by ``cloud.LocalCloud``."""
