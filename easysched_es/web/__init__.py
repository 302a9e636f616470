"""The web dashboard: server-rendered pages, a JSON API for them, actions, time travel and metrics.

Mounted on the projection service's server (`projections.service.ProjectionService`) by
`easysched run` (and `easysched ui` on Kafka): one process, one port.
"""
